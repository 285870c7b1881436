"""HMAC-SHA256 signatures of webhook bodies.

The signature covers "<timestamp>.<body>", so a receiver that rejects old timestamps
also rejects a captured request replayed later. Header format, as Stripe's:
`X-Webhook-Signature: t=<unix seconds>,v1=<hex digest>`.
"""

import hashlib
import hmac

SIGNATURE_HEADER = "X-Webhook-Signature"


def sign(*, secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(*, secret: str, header: str, body: bytes, now: int, tolerance: int = 300) -> bool:
    """Whether `header` is a valid signature of `body`, made within `tolerance` seconds.

    What a receiver does; the tests use it to check what the sender sent.
    """
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret=secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, header)
