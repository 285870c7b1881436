"""Refuse webhook targets inside our own network (SSRF).

A staff member (or a stolen staff token) could otherwise make the workers POST to the
cloud metadata service, the database or anything else only the service can reach.
The check resolves the host and refuses if any address is private, loopback,
link-local, multicast, reserved or unspecified. It runs when a subscription is saved
and again before each request, since DNS can change in between; redirects are not
followed. WEBHOOK_ALLOW_PRIVATE_TARGETS=true lifts it (tests, local development).

A check alone would leave DNS rebinding open: a name with a zero TTL can answer a public
address to the check and a loopback one to the HTTP client's own lookup a moment later.
So `vetted_target` returns the address it checked, and the request connects to that
address (events.webhook_http), never resolving the name again; the Host header and TLS
(SNI and the certificate's name) still use the URL's name.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from django.conf import settings


class UnsafeTarget(Exception):
    """The URL points at an address the service must not call."""


@dataclass(frozen=True)
class Target:
    """Where a webhook URL's request goes: its name, and the address that was checked."""

    scheme: str
    host: str
    port: int
    address: str
    path: str


def check_target(url: str) -> None:
    """Raise UnsafeTarget unless `url` is an http(s) URL to public addresses only.

    With WEBHOOK_ALLOW_PRIVATE_TARGETS only the scheme and host are checked: a
    development subscription may name a host that does not resolve yet.
    """
    if settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        _split(url)
        return
    vetted_target(url)


def _split(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("Only http and https URLs with a host are allowed.")
    return parts


def vetted_target(url: str) -> Target:
    """Resolve `url`'s host once and check every address; the address to connect to.

    Raises UnsafeTarget for another scheme, a host that does not resolve, or (unless
    WEBHOOK_ALLOW_PRIVATE_TARGETS) any address that is not public.
    """
    parts = _split(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise UnsafeTarget("The host name does not resolve.") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise UnsafeTarget("The host name does not resolve.")
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        for address in addresses:
            if not address.is_global or address.is_multicast:
                raise UnsafeTarget("The URL resolves to a private or reserved address.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(parts.scheme, str(parts.hostname), port, str(addresses[0]), path)
