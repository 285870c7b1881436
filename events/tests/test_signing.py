"""events.signing: what a receiver checks."""

from events.signing import sign, verify

BODY = b'{"id":"1"}'


def test_a_signature_verifies_with_the_same_secret_only() -> None:
    header = sign(secret="secret-one", timestamp=1_700_000_000, body=BODY)
    assert header.startswith("t=1700000000,v1=")
    assert verify(secret="secret-one", header=header, body=BODY, now=1_700_000_010)
    assert not verify(secret="secret-two", header=header, body=BODY, now=1_700_000_010)


def test_a_changed_body_or_timestamp_fails() -> None:
    header = sign(secret="s", timestamp=1_700_000_000, body=BODY)
    assert not verify(secret="s", header=header, body=b'{"id":"2"}', now=1_700_000_000)
    forged = header.replace("t=1700000000", "t=1700000001")
    assert not verify(secret="s", header=forged, body=BODY, now=1_700_000_000)


def test_an_old_signature_is_a_replay() -> None:
    header = sign(secret="s", timestamp=1_700_000_000, body=BODY)
    assert not verify(secret="s", header=header, body=BODY, now=1_700_000_000 + 301)


def test_a_malformed_header_fails() -> None:
    for header in ("", "v1=abc", "t=x,v1=abc", "garbage"):
        assert not verify(secret="s", header=header, body=BODY, now=0)
