"""Refuse webhook targets inside our own network (SSRF).

A staff member (or a stolen staff token) could otherwise make the workers POST to the
cloud metadata service, the database or anything else only the service can reach.
The check resolves the host and refuses if any address is private, loopback,
link-local, multicast, reserved or unspecified. It runs when a subscription is saved
and again before each request, since DNS can change in between; redirects are not
followed. WEBHOOK_ALLOW_PRIVATE_TARGETS=true lifts it (tests, local development).
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class UnsafeTarget(Exception):
    """The URL points at an address the service must not call."""


def check_target(url: str) -> None:
    """Raise UnsafeTarget unless `url` is an http(s) URL to public addresses only."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("Only http and https URLs with a host are allowed.")
    if settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTarget("The host name does not resolve.") from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global or address.is_multicast:
            raise UnsafeTarget("The URL resolves to a private or reserved address.")
