"""The staff admin as staff use it: in Chromium, against `make serve` on real services.

Each step saves a screenshot (admin-*.png); docs/admin.md shows the main ones.
"""

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

CHANGELIST = "/admin/users/user/"


def log_in(page: Page, email: str, password: str) -> Any:
    """Fill and submit the admin login form; the response to the POST."""
    page.goto("/admin/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    with page.expect_navigation() as navigation:
        page.click("input[type=submit]")
    return navigation.value


def test_staff_log_in(page: Page, staff_login: tuple[str, str], screenshots: Path) -> None:
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/"))
    page.fill("#id_username", staff_login[0])
    page.fill("#id_password", staff_login[1])
    page.screenshot(path=screenshots / "admin-login.png")

    page.click("input[type=submit]")

    expect(page.locator("#site-name")).to_be_visible()
    expect(page.locator("#content h1")).to_have_text("Site administration")
    page.screenshot(path=screenshots / "admin-home.png")


def test_search_by_email_prefix_finds_the_user(
    staff_page: Page, signed_up: dict[str, str], screenshots: Path
) -> None:
    page = staff_page
    page.goto(CHANGELIST)
    expect(page.locator("#changelist")).to_be_visible()

    # Any case: emails are stored lower-case and so is the search term.
    page.fill("#searchbar", f"BROWSER.TARGET.{signed_up['tag']}")
    page.press("#searchbar", "Enter")

    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(signed_up["email"])
    page.screenshot(path=screenshots / "admin-search.png")


def test_deactivate_through_the_action_then_the_api_shows_it(
    staff_page: Page,
    signed_up: dict[str, str],
    api: Any,
    staff_login: tuple[str, str],
    screenshots: Path,
) -> None:
    page = staff_page
    page.goto(f"{CHANGELIST}?q={signed_up['email']}")
    page.check("#result_list tbody tr input.action-select")
    page.select_option("select[name=action]", "deactivate_users")
    page.click("button[name=index]")

    expect(page.locator("#content h1")).to_have_text("Deactivate 1 user?")
    expect(page.locator("#status-change-users")).to_contain_text(signed_up["email"])
    page.screenshot(path=screenshots / "admin-deactivate-confirm.png")

    page.click("input[type=submit][value^='Yes']")

    expect(page.locator("ul.messagelist")).to_contain_text("Deactivated 1 user.")
    expect(page.locator("#result_list tbody tr").first).to_contain_text(signed_up["email"])
    expect(page.locator("#result_list tbody tr td.field-is_active img")).to_have_attribute(
        "alt", "False"
    )
    page.screenshot(path=screenshots / "admin-deactivated.png")

    token = api.post(
        "/api/v1/auth/token/", data={"email": staff_login[0], "password": staff_login[1]}
    )
    assert token.status == 200, token.text()
    user = api.get(
        f"/api/v1/users/{signed_up['id']}/",
        headers={"Authorization": f"Bearer {token.json()['token']}"},
    )
    assert user.status == 200, user.text()
    assert user.json()["is_active"] is False
    # The deactivated user's own password no longer gets a token.
    refused = api.post(
        "/api/v1/auth/token/",
        data={"email": signed_up["email"], "password": signed_up["password"]},
    )
    assert refused.status == 400

    # The deactivation was published as an event, in the same transaction.
    page.goto(f"/admin/events/outboxevent/?topic=user.deactivated&q={signed_up['id']}")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("user.deactivated")
    page.screenshot(path=screenshots / "admin-event-deactivated.png")


def test_retry_a_dead_lettered_delivery(staff_page: Page, screenshots: Path) -> None:
    page = staff_page
    page.goto("/admin/events/webhookdelivery/?status=dead")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Dead letter")
    page.screenshot(path=screenshots / "admin-dead-letter.png")

    page.check("#result_list tbody tr input.action-select")
    page.select_option("select[name=action]", "retry_deliveries")
    page.click("button[name=index]")

    expect(page.locator("ul.messagelist")).to_contain_text("Retrying 1 deliveries.")
    # Out of the dead letter, due now; the worker's attempt is events/tests' subject.
    page.goto("/admin/events/webhookdelivery/?status=dead")
    expect(page.locator("#result_list tbody tr")).to_have_count(0)
    page.goto("/admin/events/webhookdelivery/?status=pending")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)


def test_a_non_staff_login_is_refused(
    page: Page, signed_up: dict[str, str], screenshots: Path
) -> None:
    response = log_in(page, signed_up["email"], signed_up["password"])

    assert response.status == 200
    expect(page.locator(".errornote")).to_contain_text(
        "Please enter the correct email and password for a staff account"
    )
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/"))
    page.screenshot(path=screenshots / "admin-non-staff-refused.png")


def test_repeated_failed_logins_are_locked_out(page: Page, screenshots: Path) -> None:
    email = "nobody-guessing@example.com"
    statuses = [log_in(page, email, f"guess-{number}").status for number in range(8)]

    # LOGIN_FREE_FAILURES_PER_CLIENT is 5: five tries, then this client backs off.
    assert statuses[:5] == [200] * 5
    assert statuses[5:] == [429] * 3
    expect(page.locator("#login-throttled")).to_contain_text("Too many login attempts")
    page.screenshot(path=screenshots / "admin-throttled.png")


def test_reactivate_one_user_from_their_page_and_see_the_history(
    staff_page: Page, signed_up: dict[str, str], api: Any, screenshots: Path
) -> None:
    page = staff_page
    page.goto(f"{CHANGELIST}?q={signed_up['email']}")
    page.click(f"#result_list a:text-is('{signed_up['email']}')")
    page.click("a.deactivatelink")
    expect(page.locator("#content h1")).to_have_text(f"Deactivate {signed_up['email']}?")
    page.click("input[type=submit][value^='Yes']")
    expect(page.locator("ul.messagelist")).to_contain_text(f"Deactivated {signed_up['email']}.")

    page.click("a.reactivatelink")
    page.click("input[type=submit][value^='Yes']")
    expect(page.locator("ul.messagelist")).to_contain_text(f"Reactivated {signed_up['email']}.")

    page.click("a.historylink")
    history = page.locator("#change-history")
    expect(history).to_contain_text("Deactivated.")
    expect(history).to_contain_text("Reactivated.")
    page.screenshot(path=screenshots / "admin-history.png")
    # The user can log in again.
    token = api.post(
        "/api/v1/auth/token/",
        data={"email": signed_up["email"], "password": signed_up["password"]},
    )
    assert token.status == 200, token.text()
