"""Writes to users. Every change to a user goes through these functions: API, admin and
management commands alike.

Each service runs in one transaction, and publishes `user.created`, `user.updated` or
`user.deactivated` to the outbox inside it (events.services.event_publish), so a change
and its event commit together or not at all.
"""

from typing import Any
from urllib.parse import urlencode

from celery import current_app
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import CheckConstraint, Q
from django.http import HttpRequest
from django.utils import timezone
from knox.models import AuthToken

from core.http.exceptions import ApplicationError, InvalidCredentials, Throttled
from events.services import event_publish
from users import cache as user_caches
from users import login_throttle, topics
from users.cache import user_cache_refresh_on_commit
from users.models import User, normalize_email

# Every field `user_update` may change. Which of them a caller may touch is decided by
# the caller's role in the API's input serializers and in the admin's forms.
UPDATABLE_FIELDS = frozenset({"email", "display_name", "is_active", "is_staff", "is_superuser"})
# The fields the model's constraints read. A change to none of them skips validating the
# constraints, which Django would otherwise do by building each check's query and then
# dropping it because its fields are excluded (a sixth of a write's validation). A
# constraint that names no fields (one on expressions) counts as reading them all.
_CONSTRAINED_FIELDS = frozenset().union(
    *(
        Q(constraint.condition).referenced_base_fields
        if isinstance(constraint, CheckConstraint)
        else set(getattr(constraint, "fields", ())) or {field.name for field in User._meta.fields}
        for constraint in User._meta.constraints
    )
)
# Separates email-change tokens from every other value signed with the secret key.
EMAIL_CHANGE_SALT = "users.email-change"
# The mails are sent by tasks, named here rather than imported: users.tasks calls this
# module (users.apps imports the tasks, so every process has them registered).
EMAIL_CHANGE_CONFIRMATION_TASK = "users.tasks.send_email_change_confirmation"
EMAIL_CHANGED_NOTICE_TASK = "users.tasks.send_email_changed_notice"


class RevocationUnavailable(ApplicationError):
    """The token cache could not be told of a revocation in time: nothing was revoked."""

    status_code = 503
    code = "service_unavailable"


def _email_taken() -> ValidationError:
    # A new instance each time: a shared one would pile up tracebacks (and the locals in
    # them, passwords included) with every raise.
    return ValidationError({"email": "A user with this email already exists."})


def user_create(
    *,
    email: str,
    password: str | None,
    display_name: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
    is_active: bool = True,
) -> User:
    """Create a user. The password is checked by the configured password validators.

    A `None` password creates a user who cannot log in with a password.
    """
    user = User(
        email=normalize_email(email),
        display_name=display_name,
        is_staff=is_staff,
        is_superuser=is_superuser,
        is_active=is_active,
    )
    if password is None:
        user.set_unusable_password()
    else:
        _validate_password(password, user=user)
        user.set_password(password)
    user.full_clean()
    try:
        with transaction.atomic():
            user.save(force_insert=True)
            event_publish(
                topic=topics.USER_CREATED, aggregate_id=user.pk, payload=user_event_payload(user)
            )
            # Cache: clears a cached "absent" for this id once committed.
            user_cache_refresh_on_commit(user)
    except IntegrityError as exc:
        # Two sign-ups raced past full_clean's uniqueness check; the index decided.
        raise _email_taken() from exc
    return user


def user_update(*, user: User, data: dict[str, Any]) -> User:
    """Change the given fields of a user and save only those; return the saved row.

    `data` keys must be in UPDATABLE_FIELDS; callers restrict further by role.
    Deactivating through here revokes the user's tokens, as `user_deactivate` does.
    """
    unknown = set(data) - UPDATABLE_FIELDS
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    if "email" in data:
        data = {**data, "email": normalize_email(data["email"])}
    try:
        with transaction.atomic():
            row = _locked(user)
            changed = [field for field, value in data.items() if getattr(row, field) != value]
            if not changed:
                return row
            was_active = row.is_active
            for field in changed:
                setattr(row, field, data[field])
            # Only what changed: the other fields were valid when saved, and each unique or
            # check constraint validated is a query (the email's two, on every rename).
            row.full_clean(
                exclude=[f.name for f in User._meta.concrete_fields if f.name not in changed],
                validate_constraints=not _CONSTRAINED_FIELDS.isdisjoint(changed),
            )
            _save(row, fields=changed)
            deactivated = was_active and not row.is_active
            if deactivated:
                _revoke_tokens(user=row)
            event_publish(
                topic=topics.USER_DEACTIVATED if deactivated else topics.USER_UPDATED,
                aggregate_id=row.pk,
                payload={**user_event_payload(row), "changed": sorted(changed)},
            )
    except IntegrityError as exc:
        raise _email_taken() from exc
    return row


def user_change(*, user: User, data: dict[str, Any], actor: User) -> User:
    """Apply a change `actor` asked for through the API; return the saved row.

    A new email for one's own account is not applied here: a confirmation link goes to
    the new address (`user_email_change_request`), and the change happens when it is
    followed (`user_email_change_confirm`). Whether that address is taken is decided
    out of band, so this answers alike either way and cannot be used to probe which
    emails have accounts. Staff changing another user's email apply it at once: they can
    list every user anyway.
    """
    if "email" in data and actor.pk == user.pk:
        data = dict(data)
        user_email_change_request(user=user, new_email=data.pop("email"))
    if not data:
        return _committed(user)
    return user_update(user=user, data=data)


def _committed(user: User) -> User:
    return User.objects.get(pk=user.pk)


def user_email_change_request(*, user: User, new_email: str) -> None:
    """Mail a link that confirms `new_email` for `user`, once this transaction commits.

    The mail is sent by a task (users.tasks), so the request does the same work whether
    the address is free, taken or the same as now.
    """
    new_email = normalize_email(new_email)
    if new_email == user.email:
        return
    task = current_app.tasks[EMAIL_CHANGE_CONFIRMATION_TASK]
    user_id = str(user.pk)
    transaction.on_commit(lambda: task.delay(user_id=user_id, new_email=new_email))


def email_change_token(*, user: User, new_email: str) -> str:
    """A signed, timestamped token naming the user, their current email and the new one.

    Binding the current email makes the token single-use: once the change is applied (or
    the email changed another way) it no longer matches.
    """
    payload = {"user": str(user.pk), "from": user.email, "to": normalize_email(new_email)}
    return signing.dumps(payload, salt=EMAIL_CHANGE_SALT)


def user_email_change_send(*, user_id: str, new_email: str) -> None:
    """Mail the confirmation link to `new_email`; if the address already has an account,
    tell its owner instead, and change nothing."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or user.email == new_email:
        return
    if User.objects.filter(email=new_email).exists():
        send_mail(
            subject="Email change not possible",
            message=(
                f"Hello,\n\nsomeone asked to move another account to {new_email}, which "
                "already has an account. Nothing was changed.\n\nIf this was you, sign in "
                "to the account that uses this address instead.\n"
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[new_email],
        )
        return
    token = email_change_token(user=user, new_email=new_email)
    link = f"{settings.EMAIL_CHANGE_CONFIRM_URL}?{urlencode({'token': token})}"
    hours = max(round(settings.EMAIL_CHANGE_TOKEN_MAX_AGE / 3600), 1)
    send_mail(
        subject="Confirm your new email address",
        message=(
            f"Hello,\n\nto use {new_email} for your account, confirm it within {hours} "
            f"hour(s):\n\n{link}\n\nIf you did not ask for this, ignore this message; "
            "nothing changes without it.\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[new_email],
    )


def user_email_change_confirm(*, token: str) -> User:
    """Apply the email change a token from `user_email_change_send` names; return the user.

    The address's uniqueness is checked again now (by `user_update`): it may have been
    taken since the link was sent. The old address is told once the change commits, so
    an owner whose account was taken over this way hears of it.
    """
    invalid = ValidationError({"token": "This link is invalid or has expired."})
    try:
        payload = signing.loads(
            token, salt=EMAIL_CHANGE_SALT, max_age=settings.EMAIL_CHANGE_TOKEN_MAX_AGE
        )
    except signing.BadSignature as exc:  # SignatureExpired is a BadSignature
        raise invalid from exc
    if not isinstance(payload, dict):
        raise invalid
    user_id = payload.get("user")
    user = (
        User.objects.filter(pk=user_id, is_active=True).first()
        if isinstance(user_id, str)
        else None
    )
    if user is None or user.email != payload.get("from"):
        raise invalid
    task = current_app.tasks[EMAIL_CHANGED_NOTICE_TASK]
    old_email, new_email = user.email, payload["to"]
    with transaction.atomic():
        changed = user_update(user=user, data={"email": new_email})
        transaction.on_commit(lambda: task.delay(old_email=old_email, new_email=new_email))
    return changed


def user_email_changed_notify(*, old_email: str, new_email: str) -> None:
    """Tell the previous address that the account now uses another one."""
    send_mail(
        subject="Your email address was changed",
        message=(
            f"Hello,\n\nthe account that used {old_email} now uses {new_email}, confirmed "
            "from that address.\n\nIf you did not do this, contact support at once.\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[old_email],
    )


def _locked(user: User) -> User:
    """The user's row as committed, locked until the transaction ends.

    Writes start from it, not from the caller's copy: what another writer committed
    meanwhile (a demotion, say) is kept, the whole row that the cache is given after
    commit is the committed one, and the version (incremented on save, after the lock)
    follows the order of commits, as the cache's version checks assume.
    """
    return User.objects.select_for_update().get(pk=user.pk)


def _save(row: User, *, fields: list[str]) -> None:
    """Save `fields` of a locked row, with a new version, and refresh the cache after commit.

    The version is the locked row's plus one: the lock orders writes of a row, so
    versions follow the order of commits, not any server's clock.
    """
    row.version += 1
    row.save(update_fields=[*fields, "updated_at", "version"])
    user_cache_refresh_on_commit(row)


def user_deactivate(*, user: User) -> User:
    """Soft-delete a user: mark inactive and revoke every token. Idempotent."""
    return user_update(user=user, data={"is_active": False})


def user_reactivate(*, user: User) -> User:
    """Let a deactivated user log in again. Idempotent."""
    return user_update(user=user, data={"is_active": True})


def user_set_password(
    *,
    user: User,
    password: str | None,
    current_password: str | None = None,
    keep_token: AuthToken | None = None,
) -> User:
    """Set a new password and revoke every token except `keep_token`.

    A `None` password disables password login. With `current_password`, the change
    happens only if it is the user's password.
    Revoking is what makes a password change lock out whoever had a stolen token; the
    token of the request that made the change may be kept so the caller stays logged in.
    """
    if password is not None:
        _validate_password(password, user=user)
    with transaction.atomic():
        row = _locked(user)
        if current_password is not None and not row.check_password(current_password):
            raise ValidationError({"current_password": "The current password is incorrect."})
        if password is None:
            row.set_unusable_password()
        else:
            row.set_password(password)
        _save(row, fields=["password"])
        _revoke_tokens(user=row, keep=keep_token)
        event_publish(
            topic=topics.USER_UPDATED,
            aggregate_id=row.pk,
            payload={**user_event_payload(row), "changed": ["password"]},
        )
    return row


def auth_token_create(
    *, request: HttpRequest | None, email: str, password: str
) -> tuple[AuthToken, str]:
    """Exchange email and password for a new token; return the token row and its secret.

    The secret is returned once; only its hash is stored. Inactive users and wrong
    passwords get the same error, so the response does not tell which emails exist.
    A client backing off after failed attempts (users.login_throttle) is refused before
    any password check; failures are counted by the `user_login_failed` signal.
    """
    email = normalize_email(email)
    if request is not None:
        wait = login_throttle.login_wait(request=request, email=email)
        if wait is not None:
            raise Throttled(wait)
    user = authenticate(request, username=email, password=password)
    if user is None:
        raise InvalidCredentials("Unable to log in with the provided credentials.")
    if request is not None:
        login_throttle.login_succeeded(request=request, email=email)
    return AuthToken.objects.create(user=user)


def auth_token_revoke(*, token: AuthToken) -> None:
    """Revoke one token (logout)."""
    with transaction.atomic():
        # Before the delete: if the cache cannot be told, nothing is revoked (a 503).
        _mark_revoked([token.digest])
        token.delete()


def auth_tokens_expired_delete(*, batch_size: int = 10_000) -> int:
    """Delete every expired token, `batch_size` rows per statement; return how many.

    Expired tokens are refused whether or not they are deleted: this only reclaims space.
    Short statements keep each lock brief on a busy table.
    """
    deleted = 0
    while True:
        expired = AuthToken.objects.filter(expiry__lt=timezone.now()).values("pk")[:batch_size]
        count, _ = AuthToken.objects.filter(pk__in=expired).delete()
        deleted += count
        if count < batch_size:
            return deleted


def _validate_password(password: str, *, user: User) -> None:
    """Run the password validators, reporting their messages under the `password` field."""
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from exc


def user_event_payload(user: User) -> dict[str, Any]:
    """The payload of the user.* events (schema version 1): plain data, never the password hash.

    Public because it is a contract, not a detail of these services: the handlers
    (users.handlers) and every webhook receiver read these keys, and a handler's test gives
    it events carrying exactly what the services write.
    """
    return {
        "id": str(user.pk),
        "email": user.email,
        "display_name": user.display_name,
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "date_joined": user.date_joined.isoformat(),
        "updated_at": user.updated_at.isoformat() if user.updated_at else None,
    }


def _revoke_tokens(*, user: User, keep: AuthToken | None = None) -> None:
    tokens = AuthToken.objects.filter(user=user)
    if keep is not None:
        tokens = tokens.exclude(pk=keep.pk)
    # Exactly the rows deleted are marked in the token cache, before they are deleted.
    digests = list(tokens.values_list("digest", flat=True))
    _mark_revoked(digests)
    AuthToken.objects.filter(digest__in=digests).delete()


def _mark_revoked(digests: list[str]) -> None:
    """Tell the token cache before the rows go (users.cache.auth_tokens_revoke); if it
    cannot be told, raise RevocationUnavailable so the transaction revokes nothing."""
    try:
        user_caches.auth_tokens_revoke(digests)
    except user_caches.RevocationNotRecorded as exc:
        raise RevocationUnavailable(
            "The revocation could not be recorded; nothing was changed. Try again shortly."
        ) from exc
