"""The Redis broker transport: kombu's, with one publishing client per connection pool.

kombu's Redis channel builds a new redis-py client object for every message it publishes
(`Channel.conn_or_acquire`). The connection itself comes from a pool, but building the
client (its table of response callbacks) costs about a third of a millisecond of CPU
each time: once per event a request commits. This channel builds it once per pool and
reuses it; redis-py clients are safe to share between threads, each command taking its
own connection from the pool. Everything else is kombu's.
"""

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

TRANSPORT = "core.messaging.broker:Transport"


class Channel(kombu_redis.Channel):
    """A kombu Redis channel that reuses its synchronous client."""

    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        # A channel that lost its pool (after a connection error) builds a new one.
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the channel above."""

    Channel = Channel


def use_for_redis_urls() -> None:
    """Make `redis://` and `rediss://` broker URLs use this transport (kombu's registry of
    URL schemes), so the URLs and their TLS handling stay kombu's."""
    TRANSPORT_ALIASES["redis"] = TRANSPORT_ALIASES["rediss"] = TRANSPORT
