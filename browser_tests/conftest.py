"""Fixtures for the browser tests: a live server started by `make test-browser`, and
Debian's Chromium driven by Playwright.

These tests run only through `make test-browser` (scripts/browser_tests.sh), which serves
the app and passes its address and a staff login in the environment; run any other way
they fail and say so, rather than skip.
"""

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

# Headless, and nothing that reaches out to the network on its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 680}


def _setting(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        pytest.fail(f"{name} is unset: run the browser tests with `make test-browser`")
    return value


@pytest.fixture(scope="session")
def base_url() -> str:
    """The live server's address."""
    return _setting("BROWSER_BASE_URL")


@pytest.fixture(scope="session")
def staff_login() -> tuple[str, str]:
    """Email and password of the staff superuser the script created."""
    return _setting("BROWSER_STAFF_EMAIL"), _setting("BROWSER_STAFF_PASSWORD")


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium; `launch` gives it a fresh temporary --user-data-dir."""
    browser = playwright.chromium.launch(
        executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


def new_page(browser: Browser, base_url: str, storage_state: Any = None) -> Page:
    """A page in a browser context of its own (given cookies, if any), at the suite's size."""
    context: BrowserContext = browser.new_context(
        base_url=base_url,
        viewport=VIEWPORT,  # type: ignore[arg-type]
        storage_state=storage_state,
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A page in its own context: no cookies shared between tests."""
    page = new_page(browser, base_url)
    yield page
    page.context.close()


@pytest.fixture(scope="session")
def staff_session(browser: Browser, base_url: str, staff_login: tuple[str, str]) -> Any:
    """Cookies of one staff login, reused by every test that needs one.

    One login for the whole run: the server throttles logins per IP (20 a minute by
    default), and every test here comes from 127.0.0.1.
    """
    page = new_page(browser, base_url)
    page.goto("/admin/login/")
    page.fill("#id_username", staff_login[0])
    page.fill("#id_password", staff_login[1])
    page.click("input[type=submit]")
    page.locator("#user-tools").wait_for()
    state = page.context.storage_state()
    page.context.close()
    return state


@pytest.fixture
def staff_page(browser: Browser, base_url: str, staff_session: Any) -> Iterator[Page]:
    """A page logged in as the staff superuser."""
    page = new_page(browser, base_url, storage_state=staff_session)
    yield page
    page.context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where each step's screenshot is saved."""
    folder = Path(os.environ.get("BROWSER_ARTIFACTS", "artifacts/browser"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def api(playwright: Playwright, base_url: str) -> Iterator[Any]:
    """Plain HTTP requests to the API, outside the browser."""
    context = playwright.request.new_context(base_url=base_url)
    yield context
    context.dispose()


@pytest.fixture
def signed_up(api: Any) -> dict[str, str]:
    """A new regular user, signed up through the API; its id, email and password."""
    tag = secrets.token_hex(4)
    body = {
        "email": f"Browser.Target.{tag}@Example.com",
        "password": f"browser-{tag}-harbour-lantern",
        "display_name": f"Browser Target {tag}",
    }
    response = api.post("/api/v1/users/", data=body)
    assert response.status == 201, response.text()
    return {**body, "id": response.json()["id"], "email": response.json()["email"], "tag": tag}
