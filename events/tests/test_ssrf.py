"""events.ssrf: which webhook targets are refused."""

import pytest
from django.test import override_settings

from events.ssrf import UnsafeTarget, check_target


@override_settings(WEBHOOK_ALLOW_PRIVATE_TARGETS=False)
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://100.64.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
    ],
)
def test_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(url)


@override_settings(WEBHOOK_ALLOW_PRIVATE_TARGETS=False)
def test_public_addresses_pass() -> None:
    check_target("https://93.184.215.14/hook")
    check_target("http://[2606:4700:4700::1111]:8443/hook")


@override_settings(WEBHOOK_ALLOW_PRIVATE_TARGETS=True)
def test_the_setting_allows_private_targets_but_not_other_schemes() -> None:
    check_target("http://127.0.0.1:8000/hook")
    for url in ("ftp://127.0.0.1/x", "file:///etc/passwd", "http:///no-host"):
        with pytest.raises(UnsafeTarget):
            check_target(url)
