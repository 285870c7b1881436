"""Input validation shared by the API views."""

from typing import Any

from rest_framework.serializers import BaseSerializer


def validated(input_class: type[BaseSerializer[Any]], data: Any) -> dict[str, Any]:
    """Validate `data` with `input_class`; its validated data, or a 400 naming each field."""
    serializer = input_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
