"""Input validation and output representation for the users API.

Input serializers only validate; the services do the work. Every input serializer is
strict: a field it does not declare is a 400 naming that field, so a client can never
set `is_staff` (or anything else) by adding it to a body.
"""

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from users.cache import USER_REPRESENTATION_FIELDS, user_representation
from users.models import User, normalize_email, validate_visible_text


class UserSerializer(serializers.ModelSerializer[User]):
    """The public representation of a user. Never includes the password hash.

    The fields are declared for the schema; the representation is built in one step by
    `users.cache.user_representation` (the one the user cache stores): DRF's field by field
    rendering cost about 0.1 ms a user, which dominated a page of 50.
    """

    class Meta:
        model = User
        fields = list(USER_REPRESENTATION_FIELDS)
        read_only_fields = fields

    def to_representation(self, instance: User) -> dict[str, Any]:
        """The fields of `Meta.fields`, as DRF would render them."""
        return user_representation(instance)


# The JSON type each kind of field takes. DRF coerces (`0` to False, `123` to "123"), so a
# client bug or a probe would pass unnoticed; the API's schema promises these types.
_JSON_TYPES: tuple[tuple[type[serializers.Field[Any, Any, Any, Any]], type, str], ...] = (
    (serializers.BooleanField, bool, "Must be true or false."),
    (serializers.CharField, str, "Must be a string."),
    (serializers.ListField, list, "Must be a list."),
)


class StrictSerializer(serializers.Serializer[Any]):
    """Rejects any input field the serializer does not declare, naming each one, and any
    value that is not of its field's JSON type."""

    def to_internal_value(self, data: Any) -> Any:
        """Validate as usual after refusing undeclared fields and mistyped values."""
        if isinstance(data, Mapping):
            undeclared = sorted(set(data) - set(self.fields))
            if undeclared:
                raise serializers.ValidationError(
                    {field: ["This field is not allowed."] for field in undeclared}
                )
            mistyped = {
                name: [message]
                for name, value in data.items()
                for field_class, json_type, message in _JSON_TYPES
                if isinstance(self.fields[name], field_class)
                and value is not None
                and not isinstance(value, json_type)
            }
            if mistyped:
                raise serializers.ValidationError(mistyped)
        return super().to_internal_value(data)


class EmailField(serializers.EmailField):
    """An email in its canonical form (users.models.normalize_email), validated after
    normalizing, and refused if it holds invisible characters."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators.append(validate_visible_text)

    def to_internal_value(self, data: Any) -> str:
        """The canonical form, which the validators then check."""
        return normalize_email(super().to_internal_value(data))


def _email_field(**kwargs: Any) -> EmailField:
    return EmailField(max_length=254, **kwargs)


def _display_name_field() -> serializers.CharField:
    return serializers.CharField(
        max_length=150, required=False, allow_blank=True, validators=[validate_visible_text]
    )


def _password_field() -> serializers.CharField:
    """A write-only password input, taken exactly as typed (no trimming)."""
    return serializers.CharField(
        max_length=128, write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )


class SignUpSerializer(StrictSerializer):
    """Sign-up by anyone: the new user is neither staff nor inactive."""

    email = _email_field()
    password = _password_field()
    display_name = _display_name_field()


class StaffUserCreateSerializer(SignUpSerializer):
    """Creation by staff, who may also set the flags."""

    is_staff = serializers.BooleanField(required=False)
    is_active = serializers.BooleanField(required=False)


class UserUpdateSerializer(StrictSerializer):
    """What a user may change about themselves."""

    email = _email_field(required=False)
    display_name = _display_name_field()


class StaffUserUpdateSerializer(UserUpdateSerializer):
    """What staff may change about any user."""

    is_active = serializers.BooleanField(required=False)
    is_staff = serializers.BooleanField(required=False)


class EmailConfirmSerializer(StrictSerializer):
    """The token from the link mailed to a new email address."""

    token = serializers.CharField(max_length=1000)


class PasswordSetSerializer(StrictSerializer):
    """A new password, as staff set it for another user."""

    password = _password_field()


class PasswordChangeSerializer(PasswordSetSerializer):
    """A new password for oneself, which takes the current one too."""

    current_password = _password_field()


class TokenCreateSerializer(StrictSerializer):
    """Login credentials."""

    email = _email_field()
    password = _password_field()


class TokenSerializer(serializers.Serializer[Any]):
    """A freshly issued token: the secret is shown once, with its expiry and its user."""

    token = serializers.CharField()
    expiry = serializers.DateTimeField(allow_null=True)
    user = UserSerializer()
