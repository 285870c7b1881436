"""Schemathesis against the served OpenAPI schema (/api/schema/), in-process over WSGI, on
the real PostgreSQL and Redis of `make test`.

Every operation is fuzzed with schema-valid and schema-violating data, authenticated with
a real knox token as a normal user and as staff; then the stateful tests follow the
schema's links (a created user or webhook, `/users/me/`, to their `{id}` routes). The
checks: no 5xx, every status code documented, every body and header as documented,
negative data rejected, operations that declare auth refuse a request without it,
undeclared methods refused. Fixed seed (`derandomize`) and a bounded number of examples,
so a run is reproducible and takes under two minutes.

Not checked: `positive_data_acceptance`. A schema-valid body may still be refused for what
no schema can state (a wrong password at login, an email already taken, a password the
validators find too common), and those are 400s by design.
"""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
import yaml
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import Client
from hypothesis import HealthCheck, settings
from knox.models import AuthToken
from schemathesis.specs.openapi.checks import use_after_free

from config.wsgi import application
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 25
STATEFUL_SCENARIOS = 15
STATEFUL_STEPS = 6

SOFT_DELETED = "/api/v1/users/{id}/"

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
schema.config.checks.positive_data_acceptance.enabled = False

FUZZ_SETTINGS = settings(
    derandomize=True,  # the fixed seed: the same examples on every run
    database=None,  # nothing saved between runs (it would make runs differ)
    deadline=None,  # no wall-clock limits in tests
    max_examples=EXAMPLES_PER_OPERATION,
    # Each example creates its caller in the test's database: slow by Hypothesis's measure.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def _fuzz_environment(throttle_rates: Callable[..., None], settings: Any) -> Iterator[None]:
    """High throttle rates; the test's database connection kept across requests.

    Schemathesis calls the WSGI application directly, and Django closes the connection at
    the end of each request, which would end the test's transaction. Django's own test
    client disconnects the same two receivers for the same reason.
    """
    throttle_rates(
        anon="100000/minute",
        user="100000/minute",
        signup="100000/minute",
        login_ip="100000/minute",
    )
    settings.LOGIN_FREE_FAILURES_PER_CLIENT = 100000
    settings.LOGIN_FREE_FAILURES_PER_EMAIL = 100000
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


# Credentials are attached when a case is generated, and the coverage phase generates
# cases while pytest collects, before any database exists. So cases carry a placeholder,
# and the real token is made just before the request is sent.
PENDING_TOKEN = "pending-caller-token"


@schema.auth(refresh_interval=None)
class KnoxBearer:
    """Bearer credentials, as Schemathesis auth: its `ignored_auth` check then knows them
    and probes each operation without them and with invalid ones."""

    caller_is_staff = False

    def get(self, case: Any, context: Any) -> str:
        """The placeholder; `with_real_token` swaps it for a token."""
        return PENDING_TOKEN

    def set(self, case: Any, data: str, context: Any) -> None:
        """Send it the way clients do."""
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Swap the placeholder for a real knox token of a new user (or staff member).

    A fresh caller per request: a request that deactivated its caller or changed its
    password (which revokes its tokens) leaves the next one unaffected.
    """
    if (case.headers or {}).get("Authorization") == f"Bearer {PENDING_TOKEN}":
        caller = UserFactory.create(is_staff=KnoxBearer.caller_is_staff)
        _, secret = AuthToken.objects.create(user=caller)
        case.headers["Authorization"] = f"Bearer {secret}"


@pytest.fixture(params=[False, True], ids=["user", "staff"])
def caller_is_staff(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run the test as normal users, then as staff."""
    monkeypatch.setattr(KnoxBearer, "caller_is_staff", request.param)
    return bool(request.param)


@schema.parametrize()
@FUZZ_SETTINGS
def test_operation(case: Any, caller_is_staff: bool) -> None:
    case.call_and_validate()


def test_stateful(caller_is_staff: bool) -> None:
    class Links(schema.as_state_machine()):  # type: ignore[misc]
        # Each scenario starts from the same database and cache: Hypothesis requires the
        # same choices to meet the same responses (a sign-up repeated in a later scenario
        # would otherwise find its email taken), or it stops with FlakyStrategyDefinition.
        def setup(self) -> None:
            self.savepoint = transaction.savepoint()

        def teardown(self) -> None:
            transaction.savepoint_rollback(self.savepoint)
            cache.clear()

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            # DELETE /users/{id}/ deactivates, as documented: staff still read and can
            # reactivate the user, so "still there after DELETE" is by design on that route
            # (and only there; a deleted webhook must be gone).
            excluded = [use_after_free] if case.path == SOFT_DELETED else []
            case.validate_response(
                response,
                excluded_checks=excluded,
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    Links.run(
        settings=settings(
            FUZZ_SETTINGS,
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
        )
    )


def test_the_schema_has_links_for_the_stateful_tests() -> None:
    # Without links the stateful tests would only repeat the single-operation ones.
    served = yaml.safe_load(Client().get("/api/schema/").content)
    links = [
        link
        for path in served["paths"].values()
        for operation in path.values()
        for response in operation["responses"].values()
        for link in response.get("links", {}).values()
    ]
    targets = {link["operationId"] for link in links}
    assert {"v1_users_retrieve", "v1_users_destroy", "v1_webhooks_partial_update"} <= targets
