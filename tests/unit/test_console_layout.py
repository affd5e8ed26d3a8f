"""The console's place in the layout: the webhook app never imports it, its role rules are pure, every
clinic-scoped endpoint names the permission it needs, and no module grows past the size limit."""

from __future__ import annotations

import ast

from console.api import endpoints
from medspa.settings import REPO_ROOT


def _imports(path) -> set[str]:  # type: ignore[no-untyped-def]
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_webhook_app_never_imports_the_console():
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in (REPO_ROOT / "webhooks").rglob("*.py")
        if any(name == "console" or name.startswith("console.") for name in _imports(path))
    ]
    assert offenders == []


def test_staff_access_rules_are_pure_domain():
    ours = {"db", "worker", "webhooks", "console", "medspa", "scripts"}
    imported = _imports(REPO_ROOT / "domain" / "staff_access.py")
    assert not {name.split(".")[0] for name in imported} & ours


def test_every_clinic_endpoint_names_its_permission():
    unguarded = [f"{s.method} {s.path}" for s in endpoints() if s.clinic_scoped and s.permission is None]
    assert unguarded == []
    assert all(s.clinic_scoped for s in endpoints() if s.permission is not None)


def test_console_modules_stay_small():
    large = [
        (str(path.relative_to(REPO_ROOT)), n)
        for path in (REPO_ROOT / "console").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 500
    ]
    assert large == []
