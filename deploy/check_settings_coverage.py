"""Fail if a setting documented in docs/settings.md is missing from the Kubernetes config.

Usage: kubectl kustomize deploy/k8s/base | python deploy/check_settings_coverage.py
Every variable of the application and server tables must be a key of the ConfigMap or
the Secret template, so a new setting cannot ship without a production value.
"""

import re
import sys
from pathlib import Path

import yaml

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
# The disposable services' table documents development tooling, not the deployed app.
END_OF_APP_SETTINGS = "And the disposable services"


def documented_variables() -> set[str]:
    """Variable names from the first column of the app and server tables."""
    text = DOCS.read_text().split(END_OF_APP_SETTINGS, 1)[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", text, flags=re.MULTILINE))


def configured_variables(manifests: str) -> set[str]:
    """Keys of every ConfigMap and Secret in the rendered manifests."""
    keys: set[str] = set()
    for document in yaml.safe_load_all(manifests):
        if document and document.get("kind") in ("ConfigMap", "Secret"):
            for field in ("data", "stringData"):
                keys.update(document.get(field) or {})
    return keys


def main() -> int:
    """Print what is missing and return 1, or return 0 when every setting is covered."""
    documented = documented_variables()
    missing = sorted(documented - configured_variables(sys.stdin.read()))
    if missing:
        print("settings missing from deploy/k8s/base (configmap.yaml or secret.yaml):")
        print("\n".join(f"  {name}" for name in missing))
        return 1
    print(f"settings coverage: all {len(documented)} documented variables are configured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
