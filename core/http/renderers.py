"""The browsable API's renderer, fitted to the Content-Security-Policy (no inline styles)."""

from typing import Any

from rest_framework import renderers


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    """DRF's browsable API without the two things of its page that need inline styles.

    The Pygments stylesheet for code in descriptions is an inline `<style>` element, and
    the "Extra Actions" menu carries a `style` attribute; under `style-src 'self'` the
    browser blocks both. Descriptions render as plain text, and the extra actions
    (`/users/me/`, `/users/confirm-email/`, ...) are reached by their URLs, as the schema
    lists them.
    """

    def get_context(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """DRF's page context, without the inline Pygments stylesheet."""
        context = super().get_context(*args, **kwargs)
        context["code_style"] = None
        return context

    def get_extra_actions(self, view: Any, *args: Any) -> dict[str, str] | None:
        """No "Extra Actions" menu (see the class docstring)."""
        return None
