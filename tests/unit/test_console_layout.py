"""The console's place in the layout: every clinic-scoped endpoint names the permission it needs, and no
module grows past the size limit.  (Which way its imports point — the webhook app never imports it, the role
rules in domain/ are pure — is tests/unit/test_module_boundaries.py.)"""

from __future__ import annotations

from console.api import endpoints
from medspa.settings import REPO_ROOT


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
