"""Background jobs of the users app: thin wrappers around users.services."""

from celery import shared_task

from users import services


@shared_task(name=services.EMAIL_CHANGE_CONFIRMATION_TASK)
def send_email_change_confirmation(*, user_id: str, new_email: str) -> None:
    """Mail the link confirming a new email (or, if it is taken, a notice to its owner)."""
    services.user_email_change_send(user_id=user_id, new_email=new_email)


@shared_task(name=services.EMAIL_CHANGED_NOTICE_TASK)
def send_email_changed_notice(*, old_email: str, new_email: str) -> None:
    """Tell the previous address that the account's email was changed."""
    services.user_email_changed_notify(old_email=old_email, new_email=new_email)


@shared_task(name="users.tasks.delete_expired_auth_tokens")
def delete_expired_auth_tokens() -> int:
    """Delete expired API tokens (scheduled by beat); return how many. Idempotent."""
    return services.auth_tokens_expired_delete()
