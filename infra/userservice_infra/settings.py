"""The service's settings on ECS: the Kubernetes ConfigMap's values, AWS specifics on top.

deploy/k8s/base/configmap.yaml is the one list of production values for the plain
settings; reading it here (rather than keeping a copy) means a value changed for one
platform is changed for both. The stack adds the secrets and connection templates, and
the settings-coverage test holds the result to docs/settings.md in both directions.
"""

from pathlib import Path

import yaml

CONFIGMAP = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "configmap.yaml"
# The task's own writable volume: the root filesystem is read-only.
TASK_TMP = "/tmp"  # noqa: S108  # nosec B108
# Operators tune these in SSM Parameter Store without a new template (docs/deploy.md, "AWS").
SSM_SETTINGS_PREFIX = "WEBHOOK_"


def configmap_settings() -> dict[str, str]:
    """The `data` of the Kubernetes ConfigMap: every non-secret setting's production value."""
    document = yaml.safe_load(CONFIGMAP.read_text())
    return {str(name): str(value) for name, value in document["data"].items()}


def plain_settings(*, domain_name: str, web_concurrency: int) -> dict[str, str]:
    """Every non-secret setting that is not an SSM parameter: the task definitions' env."""
    settings = configmap_settings()
    settings.update(
        {
            # `localhost`: the container health check's Host. The entrypoint adds the task's IP.
            "DJANGO_ALLOWED_HOSTS": f"{domain_name},localhost",
            "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://{domain_name}",
            "DEFAULT_FROM_EMAIL": f"no-reply@{domain_name}",
            # The task's CPU size, not the host's CPU count, sizes gunicorn.
            "WEB_CONCURRENCY": str(web_concurrency),
        }
    )
    return {
        name: value for name, value in settings.items() if not name.startswith(SSM_SETTINGS_PREFIX)
    }


def ssm_settings() -> dict[str, str]:
    """The webhook settings, with the ConfigMap's values as the parameters' defaults."""
    return {
        name: value
        for name, value in configmap_settings().items()
        if name.startswith(SSM_SETTINGS_PREFIX)
    }
