"""HTTP to webhook endpoints: keep-alive connections, pinned to the address that was vetted.

Each worker process keeps one urllib3 connection pool per (scheme, host, port, address),
so consecutive deliveries to an endpoint reuse a connection instead of opening a TCP (and
TLS) connection each. Pools connect to the address events.ssrf vetted, never to whatever
the name resolves to later, which closes DNS rebinding; the Host header, TLS SNI and the
certificate check still use the URL's name. The number of pools (WEBHOOK_HTTP_POOLS,
least recently used closed first) and of connections kept per pool
(WEBHOOK_HTTP_POOL_CONNECTIONS) are bounded.

Why urllib3 and not requests: requests resolves and connects by URL, and pinning an
address under it means overriding its adapter's internals; urllib3's pools take the
address and the TLS name separately, which is exactly this.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass

import certifi
import urllib3
from django.conf import settings

from events.ssrf import Target

_PoolKey = tuple[str, str, int, str]
_lock = threading.Lock()
_pools: "OrderedDict[_PoolKey, urllib3.HTTPConnectionPool]" = OrderedDict()


@dataclass(frozen=True)
class Response:
    """What a delivery needs of an answer."""

    status: int


def post(*, target: Target, body: bytes, headers: dict[str, str], timeout: float) -> Response:
    """POST `body` to `target` over a pooled connection; no retries, no redirects followed.

    Raises urllib3.exceptions.HTTPError (or OSError) when no answer came.
    """
    host = f"[{target.host}]" if ":" in target.host else target.host
    default_port = 443 if target.scheme == "https" else 80
    host_header = host if target.port == default_port else f"{host}:{target.port}"
    response = _pool(target).urlopen(
        "POST",
        target.path,
        body=body,
        headers={**headers, "Host": host_header},
        retries=False,
        redirect=False,
        timeout=urllib3.Timeout(total=timeout),
        preload_content=True,
        assert_same_host=False,
    )
    return Response(status=response.status)


def close_pools() -> None:
    """Close every pooled connection of this process (tests, and after a fork)."""
    with _lock:
        while _pools:
            _, pool = _pools.popitem()
            pool.close()


def _pool(target: Target) -> urllib3.HTTPConnectionPool:
    key = (target.scheme, target.host, target.port, target.address)
    with _lock:
        pool = _pools.get(key)
        if pool is not None:
            _pools.move_to_end(key)
            return pool
        pool = _new_pool(target)
        _pools[key] = pool
        while len(_pools) > settings.WEBHOOK_HTTP_POOLS:
            _, evicted = _pools.popitem(last=False)
            evicted.close()
        return pool


def _new_pool(target: Target) -> urllib3.HTTPConnectionPool:
    # block=False: a burst beyond the kept connections opens extra ones and closes them
    # after use, rather than waiting.
    size = settings.WEBHOOK_HTTP_POOL_CONNECTIONS
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            maxsize=size,
            block=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    return urllib3.HTTPConnectionPool(target.address, target.port, maxsize=size, block=False)
