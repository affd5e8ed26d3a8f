"""``medspa staff-users`` and ``medspa console`` as processes: bootstrap the first owner, sign in with what was
set, disable and reset, mint a token; the console command refuses a production start without its key."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx
from sqlalchemy import text

from medspa.devstack import free_port
from medspa.secrets import EXIT_CONFIGURATION
from medspa.services import Infrastructure
from medspa.settings import REPO_ROOT
from tests.e2e.test_cli_clinic import assert_one_line_error
from tests.integration.test_startup import production_env
from tests.support.console import CONSOLE_SECRET, GLOW, HARBOR, running_console
from tests.support.infra import wait_for


def medspa(infra: Infrastructure, *args: str, stdin: str = "", data_dir: str = "") -> subprocess.CompletedProcess[str]:
    import os

    env = os.environ.copy() | infra.as_env() | {"CONSOLE_SECRET_KEY": CONSOLE_SECRET, "ENVIRONMENT": "test"}
    if data_dir:
        env["DATA_DIR"] = data_dir
    return subprocess.run(
        [sys.executable, "-m", "scripts.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bootstrap_the_first_owner_then_sign_in_disable_reset_and_mint(infra, owner_engine, tmp_path):
    email = f"owner-{uuid.uuid4().hex[:6]}@glow.example"
    password = "a sturdy first password"
    added = medspa(
        infra,
        "staff-users",
        "add",
        email,
        "--clinic",
        "glow-medspa",
        "--role",
        "owner",
        "--name",
        "First Owner",
        "--password-stdin",
        stdin=password + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert f"Added {email} as owner of glow-medspa" in added.stdout
    assert password not in added.stdout + added.stderr

    listed = medspa(infra, "staff-users", "list", "--clinic", "glow-medspa")
    assert email in listed.stdout and "owner" in listed.stdout and "active" in listed.stdout
    not_in_harbor = medspa(infra, "staff-users", "list", "--clinic", "harbor-aesthetics")
    assert email not in not_in_harbor.stdout

    assert_one_line_error(
        medspa(
            infra,
            "staff-users",
            "add",
            f"x-{email}",
            "--clinic",
            "glow-medspa",
            "--role",
            "owner",
            "--password-stdin",
            stdin="short\n",
        ),
        "at least 12 characters",
    )
    assert_one_line_error(
        medspa(
            infra, "staff-users", "add", f"p-{email}", "--clinic", "glow-medspa", "--role", "provider", "--no-password"
        ),
        "--provider",
    )
    provider = medspa(
        infra,
        "staff-users",
        "add",
        f"p-{email}",
        "--clinic",
        "glow-medspa",
        "--role",
        "provider",
        "--provider",
        "maya-chen",
        "--no-password",
    )
    assert provider.returncode == 0, provider.stderr

    with running_console(infra, tmp_path, with_oidc=False) as console:
        http = console.client()
        assert console.post_sign_in(http, email, password).status_code == 303
        assert http.get("/api/v1/me").json()["clinics"][0]["role"] == "owner"

        token = medspa(infra, "staff-users", "token", email, "--clinic", "glow-medspa", "--scope", "clients:read")
        assert token.returncode == 0, token.stderr
        bearer = {"Authorization": f"Bearer {token.stdout.strip()}"}
        assert console.client().get(f"/api/v1/clinics/{GLOW}/clients", headers=bearer).status_code == 200

        disabled = medspa(infra, "staff-users", "disable", email, "--clinic", "glow-medspa")
        assert disabled.returncode == 0, disabled.stderr
        assert http.get("/api/v1/me").status_code == 401, "disabling signs the account out everywhere"
        assert console.client().get(f"/api/v1/clinics/{GLOW}/clients", headers=bearer).status_code == 401
        assert medspa(infra, "staff-users", "enable", email, "--clinic", "glow-medspa").returncode == 0
        assert console.client().get(f"/api/v1/clinics/{GLOW}/clients", headers=bearer).status_code == 200

        reset = medspa(
            infra,
            "staff-users",
            "reset-password",
            email,
            "--clinic",
            "glow-medspa",
            "--password-stdin",
            stdin="the second password\n",
        )
        assert reset.returncode == 0, reset.stderr
        refused = console.client().get(f"/api/v1/clinics/{GLOW}/clients", headers=bearer)
        assert refused.status_code == 401 and "password" in refused.json()["detail"], "a reset ends the tokens too"
        assert "API tokens" in reset.stdout
        assert console.post_sign_in(console.client(), email, password).status_code == 401
        assert console.post_sign_in(console.client(), email, "the second password").status_code == 303

        enrolled = medspa(infra, "staff-users", "totp", email, "--clinic", "glow-medspa", "--enable")
        assert enrolled.returncode == 0 and "otpauth://totp/" in enrolled.stdout
        again = console.client()
        step = console.post_sign_in(again, email, "the second password")
        assert step.headers["location"].startswith("/sign-in/totp")

    with owner_engine.connect() as conn:
        actions = list(
            conn.execute(
                text(
                    "SELECT action FROM staff_audit_log WHERE actor = 'cli' AND target_id = "
                    "(SELECT id FROM staff_users WHERE email = :e) ORDER BY id"
                ),
                {"e": email},
            ).scalars()
        )
    assert actions == [
        "staff.added",
        "token.minted",
        "staff.disabled",
        "staff.enabled",
        "staff.password_reset",
        "staff.totp_enabled",
    ]
    assert_one_line_error(
        medspa(infra, "staff-users", "disable", "nobody@glow.example", "--clinic", "glow-medspa"), "no staff user"
    )


def test_the_console_command_refuses_production_without_its_key_and_starts_with_one(tmp_path):
    medspa_bin = [sys.executable, "-m", "scripts.cli", "console"]
    port = free_port()
    env = production_env(tmp_path, CONSOLE_PUBLIC_URL="https://console.example.com", CONSOLE_PORT=str(port))
    refused = subprocess.run(medspa_bin, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert refused.returncode == EXIT_CONFIGURATION, refused.stderr
    line = [ln for ln in refused.stderr.splitlines() if "refusing to start" in ln]
    assert (
        len(line) == 1 and line[0].startswith("medspa console: refusing to start") and "CONSOLE_SECRET_KEY" in line[0]
    )

    half_oidc = env | {"CONSOLE_SECRET_KEY": CONSOLE_SECRET, "CONSOLE_OIDC_ISSUER": "https://idp.example.com"}
    refused = subprocess.run(medspa_bin, env=half_oidc, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert refused.returncode == EXIT_CONFIGURATION and "CONSOLE_OIDC_CLIENT_ID" in refused.stderr

    good = env | {"CONSOLE_SECRET_KEY": CONSOLE_SECRET}
    process = subprocess.Popen(
        medspa_bin, env=good, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 30, what="the production console to serve")
        page = httpx.get(f"http://127.0.0.1:{port}/sign-in", timeout=5)
        cookie = page.headers.get("set-cookie", "")
        assert cookie.startswith("__Host-medspa_signin=") and "Secure" in cookie
    finally:
        process.terminate()
        process.wait(20)


def test_the_operator_adds_an_existing_account_to_another_clinic_and_says_its_password_stands(infra, tmp_path):
    email = f"both-{uuid.uuid4().hex[:6]}@glow.example"
    password = "the one password they have"
    first = medspa(
        infra,
        "staff-users",
        "add",
        email,
        "--clinic",
        "glow-medspa",
        "--role",
        "front_desk",
        "--password-stdin",
        stdin=password + "\n",
    )
    assert first.returncode == 0, first.stderr
    assert_one_line_error(
        medspa(
            infra,
            "staff-users",
            "add",
            email,
            "--clinic",
            "harbor-aesthetics",
            "--role",
            "manager",
            "--password-stdin",
            stdin="another password for harbor\n",
        ),
        "already has an account",
    )
    joined = medspa(infra, "staff-users", "add", email, "--clinic", "harbor-aesthetics", "--role", "manager")
    assert joined.returncode == 0, joined.stderr
    assert "existing account" in joined.stdout and "own password, unchanged" in joined.stdout, joined.stdout

    with running_console(infra, tmp_path, with_oidc=False) as console:
        http = console.client()
        assert console.post_sign_in(http, email, password).status_code == 303, "the same password at both"
        assert http.get(f"/api/v1/clinics/{HARBOR}/clients").status_code == 200
