"""The API's JSON parser: DRF's, with a bound on how deeply a body may nest.

Python's decoder recurses once per open bracket and raises RecursionError (not the
ValueError DRF turns into a 400) when a body nests deeper than the interpreter's
recursion limit; a body that stays just below it still makes every later recursive walk
over the data (validation, error rendering) a risk. A body deeper than
MAX_JSON_NESTING_DEPTH is therefore refused as a parse error, whatever the view.
"""

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError


def nesting_depth_exceeds(data: Any, *, limit: int) -> bool:
    """True when containers in `data` nest more than `limit` levels; walks iteratively."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; too deeply nested bodies are a 400 `parse_error`."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Parse the body, refusing any nesting deeper than MAX_JSON_NESTING_DEPTH."""
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - the body nests too deeply.") from exc
        if nesting_depth_exceeds(data, limit=settings.MAX_JSON_NESTING_DEPTH):
            raise ParseError(
                f"JSON parse error - the body nests deeper than "
                f"{settings.MAX_JSON_NESTING_DEPTH} levels."
            )
        return data
