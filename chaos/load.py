"""The chaos run's load generator: a fixed mix of sign-ups, reads and updates.

Closed loop, a fixed number of threads for a fixed time. Each thread is one API client
that signs users up (then logs them in for a token), reads them (`GET /users/{id}/`,
`GET /users/me/`) and renames them (`PATCH /users/{id}/`), cycling through one fixed
sequence of operations. Like a well-behaved API client it echoes the read-your-writes
pin (`X-Primary-Pin`). Every response is recorded with its status, timing and, for a
sign-up, the email, so the run can attribute each failure to the fault active then and
check each 201 against the database.
"""

import http.client
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

# One cycle of each client: a sign-up (followed by its token request), 8 reads by id,
# 8 reads of /me/, 2 updates. Writes are what make work for the Celery worker (3 to 4
# tasks each): this share keeps one worker of 2 processes ahead on 2 shared cores, so a
# backlog left by a fault drains during the run.
MIX = ("signup", *("get", "me") * 4, "patch", *("get", "me") * 4, "patch")
PASSWORD = "violet-harbour-lantern-42"  # noqa: S105 (test users on loopback)
CLIENT_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Response:
    """One request and what came back; times are seconds since the run's start."""

    kind: str
    status: int  # 0: no HTTP answer (connection refused, reset, timeout)
    started: float
    finished: float
    code: str = ""  # the error body's `code`, or the exception's type for status 0
    email: str = ""  # sign-ups only

    @property
    def seconds(self) -> float:
        """How long the client waited for the answer."""
        return self.finished - self.started


@dataclass
class Account:
    """A user this client signed up and holds a token for."""

    user_id: str
    email: str
    token: str


@dataclass
class Client:
    """One load thread's state."""

    number: int
    port: int
    epoch: float
    responses: list[Response] = field(default_factory=list)
    accounts: list[Account] = field(default_factory=list)
    pin: str = ""
    turn: int = 0

    def request(
        self, kind: str, method: str, path: str, body: dict[str, Any] | None, token: str = ""
    ) -> tuple[Response, dict[str, Any]]:
        """Send one request; record and return the response and its JSON body."""
        headers = {"Content-Type": "application/json", "Host": "localhost"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.pin:
            headers["X-Primary-Pin"] = self.pin
        payload = json.dumps(body).encode() if body is not None else None
        started = time.monotonic() - self.epoch
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=CLIENT_TIMEOUT_SECONDS
        )
        document: dict[str, Any] = {}
        try:
            connection.request(method, path, body=payload, headers=headers)
            answer = connection.getresponse()
            raw = answer.read()
            status = answer.status
            pin = answer.getheader("X-Primary-Pin")
            if pin:
                self.pin = pin
            document = _json(raw)
            code = str(document.get("error", {}).get("code", "")) if status >= 300 else ""
        except (OSError, http.client.HTTPException) as error:
            status, code = 0, type(error).__name__
        finally:
            connection.close()
        email = str(body.get("email", "")) if kind == "signup" and body else ""
        response = Response(kind, status, started, time.monotonic() - self.epoch, code, email)
        self.responses.append(response)
        return response, document

    def step(self) -> None:
        """The next operation of the mix (a sign-up while this client has no account)."""
        operation = MIX[self.turn % len(MIX)]
        self.turn += 1
        if operation == "signup" or not self.accounts:
            self.sign_up()
            return
        account = self.accounts[self.turn % len(self.accounts)]
        if operation == "get":
            self.request("get", "GET", f"/api/v1/users/{account.user_id}/", None, account.token)
        elif operation == "me":
            self.request("me", "GET", "/api/v1/users/me/", None, account.token)
        else:
            body = {"display_name": f"renamed {self.turn}"}
            path = f"/api/v1/users/{account.user_id}/"
            self.request("patch", "PATCH", path, body, account.token)

    def sign_up(self) -> None:
        """Sign a new user up and, if that worked, get a token for it."""
        email = f"chaos-{self.number}-{uuid.uuid4().hex[:12]}@example.com"
        signup = {"email": email, "password": PASSWORD, "display_name": f"Load {self.number}"}
        response, user = self.request("signup", "POST", "/api/v1/users/", signup)
        if response.status != 201:
            return
        credentials = {"email": email, "password": PASSWORD}
        response, token = self.request("token", "POST", "/api/v1/auth/token/", credentials)
        if response.status == 200:
            self.accounts.append(Account(str(user["id"]), email, str(token["token"])))


def _json(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


class Load:
    """`concurrency` clients in threads, running until `stop()`."""

    def __init__(self, *, port: int, concurrency: int, epoch: float, pause: float) -> None:
        self.clients = [Client(number, port, epoch) for number in range(concurrency)]
        self.pause = pause
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(client,), name=f"load-{client.number}")
            for client in self.clients
        ]

    def start(self) -> None:
        """Start every client."""
        for thread in self.threads:
            thread.start()

    def stop(self) -> list[Response]:
        """Stop the clients after their current request; return every response."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(CLIENT_TIMEOUT_SECONDS * 2 + 5)
        responses = [response for client in self.clients for response in client.responses]
        return sorted(responses, key=lambda response: response.started)

    def _run(self, client: Client) -> None:
        while not self.stopping.is_set():
            client.step()
            # A short pause keeps the load bounded on a shared machine.
            self.stopping.wait(self.pause)
