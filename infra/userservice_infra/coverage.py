"""Settings coverage: the task definitions provide exactly the settings the app reads.

The same contract as deploy/check_settings_coverage.py for Kubernetes, reusing its parsing
of docs/settings.md, in both directions: nothing documented is missing, nothing extra is
set. A connection setting counts as provided when its template and credentials both are
(scripts/ecs_entrypoint.py composes it at start).
"""

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def _module(relative_path: str) -> ModuleType:
    """Load one of the service's own modules by path (the infra venv has no Django)."""
    path = REPO_ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


entrypoint = _module("scripts/ecs_entrypoint.py")
kubernetes_coverage = _module("deploy/check_settings_coverage.py")


def documented_settings() -> set[str]:
    """The variables of docs/settings.md's application and server tables."""
    return set(kubernetes_coverage.documented_variables())


def provided_settings(container: dict[str, Any]) -> set[str]:
    """The settings a synthesized container definition provides, templates composed."""
    names = {item["Name"] for item in container.get("Environment", [])}
    names |= {item["Name"] for item in container.get("Secrets", [])}
    for setting in entrypoint.COMPOSED_SETTINGS:
        inputs = set(entrypoint.inputs_of(setting))
        if inputs <= names:
            names = (names - inputs) | {setting}
    return names


def coverage_problems(*, documented: set[str], provided: set[str]) -> list[str]:
    """One line per setting missing from, or extra in, what a container provides."""
    return [f"missing: {name}" for name in sorted(documented - provided)] + [
        f"not read by the app: {name}" for name in sorted(provided - documented)
    ]
