"""Background jobs of the users app: thin wrappers around users.services."""

from celery import shared_task

from users import services


@shared_task(name="users.tasks.delete_expired_auth_tokens")
def delete_expired_auth_tokens() -> int:
    """Delete expired API tokens (scheduled by beat); return how many. Idempotent."""
    return services.auth_tokens_expired_delete()
