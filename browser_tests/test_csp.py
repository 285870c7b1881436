"""The admin, the API docs and the browsable API work under the Content-Security-Policy.

Each page is loaded in Chromium with a listener for `securitypolicyviolation` events
(added before any of the page's own scripts run) and the console watched for CSP
messages; a page that needed anything the policy forbids fails here, and the page is
checked to have actually rendered (Swagger UI's operations, the browsable API's content).
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from browser_tests.conftest import new_page

LISTEN = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(
    `${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


class Watched:
    """A page whose CSP violations (events and console messages) are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        page.add_init_script(LISTEN)
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.console.append(message.text)

    def violations(self) -> list[str]:
        """Every violation seen on the current page so far."""
        return [*self.page.evaluate("window.__cspViolations || []"), *self.console]


@pytest.fixture
def watched(browser: Browser, base_url: str, staff_session: Any) -> Iterator[Watched]:
    page = new_page(browser, base_url, storage_state=staff_session)
    yield Watched(page)
    page.context.close()


@pytest.fixture
def watched_anonymous(browser: Browser, base_url: str) -> Iterator[Watched]:
    page = new_page(browser, base_url)
    yield Watched(page)
    page.context.close()


def visit(watched: Watched, path: str) -> None:
    response = watched.page.goto(path)
    assert response is not None
    assert "default-src 'none'" in (response.headers.get("content-security-policy") or "")
    watched.page.wait_for_load_state("networkidle")


def test_admin_login_page(watched_anonymous: Watched) -> None:
    visit(watched_anonymous, "/admin/login/")
    expect(watched_anonymous.page.locator("#id_username")).to_be_visible()
    assert watched_anonymous.violations() == []


@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/users/user/", "/admin/users/user/add/", "/admin/auth/group/add/"]
)
def test_admin_pages(watched: Watched, path: str) -> None:
    visit(watched, path)
    expect(watched.page.locator("#content")).to_be_visible()
    assert watched.violations() == []


def test_admin_change_form_widgets(watched: Watched, screenshots: Path) -> None:
    visit(watched, "/admin/users/user/")
    watched.page.locator("#result_list tbody a").first.click()
    watched.page.wait_for_load_state("networkidle")
    # The permission pickers are JavaScript widgets: they render only if scripts ran.
    expect(watched.page.locator("#id_user_permissions_filter")).to_be_visible()
    watched.page.screenshot(path=screenshots / "csp-admin-change-form.png")
    assert watched.violations() == []


def test_api_docs(watched: Watched, screenshots: Path) -> None:
    visit(watched, "/api/docs/")
    # Swagger UI renders the operations from the schema: its scripts and styles ran.
    expect(watched.page.locator(".swagger-ui .opblock").first).to_be_visible()
    watched.page.screenshot(path=screenshots / "csp-api-docs.png")
    assert watched.violations() == []


@pytest.mark.parametrize("path", ["/api/v1/users/me/?format=api", "/api/v1/users/?format=api"])
def test_browsable_api(watched: Watched, path: str, screenshots: Path) -> None:
    visit(watched, path)
    expect(watched.page.locator(".response-info")).to_be_visible()
    name = path.strip("/").split("?")[0].replace("/", "-")
    watched.page.screenshot(path=screenshots / f"csp-browsable-{name}.png")
    assert watched.violations() == []
