"""`medspa campaign …` end to end: the real CLI in a subprocess against the running service (app + worker),
texts delivered to the fake Twilio API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from medspa.settings import REPO_ROOT
from tests.support.stack import running_stack, settings_env


def _phone() -> str:
    return "+1628" + str(uuid.uuid4().int % 10**7).zfill(7)


def _daytime_zone() -> str:
    """A fixed-offset zone where it is about noon right now (so quiet hours defer nobody)."""
    offset = 12 - datetime.now(UTC).hour
    offset = offset - 24 if offset > 14 else offset + 24 if offset < -12 else offset
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def test_campaign_create_preview_send_report_from_the_command_line(infra, tmp_path, owner_engine):
    with running_stack(infra, tmp_path) as (stack, _):
        slug = "cli-" + uuid.uuid4().hex[:8]
        number = _phone()
        tz = _daytime_zone()
        with owner_engine.begin() as conn:
            clinic_id = conn.execute(
                text(
                    """INSERT INTO clinics (slug, name, timezone, public_key, phone, policies)
                       VALUES (:s, 'Cli Spa', :tz, :s, '+14155550000',
                               '{"opt_out_footer": "Txt STOP to end.", "marketing_cap_per_week": 3}'::jsonb)
                       RETURNING id"""
                ),
                {"s": slug, "tz": tz},
            ).scalar_one()
            conn.execute(
                text("INSERT INTO clinic_phone_numbers (clinic_id, e164) VALUES (:c, :n)"),
                {"c": clinic_id, "n": number},
            )
            phones = {}
            for name, consent, tags in (
                ("Ana Vip", "opted_in", ["vip"]),
                ("Bo Vip", "opted_in", ["vip"]),
                ("Cy Vip", "opted_out", ["vip"]),
                ("Di Plain", "opted_in", []),
            ):
                phone = _phone()
                phones[name] = phone
                conn.execute(
                    text("""INSERT INTO clients (clinic_id, phone_e164, name, consent_state, marketing_consent, tags)
                            VALUES (:c, :p, :n, :s, 'granted', CAST(:t AS text[]))"""),
                    {"c": clinic_id, "p": phone, "n": name, "s": consent, "t": tags},
                )
        env = os.environ.copy() | settings_env(stack.settings)

        def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
            done = subprocess.run(
                [sys.executable, "-m", "scripts.cli", "campaign", *args],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert (done.returncode == 0) == ok, done.stderr
            return done

        created = json.loads(
            cli(
                "create",
                "--clinic",
                slug,
                "--name",
                "VIP thanks",
                "--tag",
                "vip",
                "--json",
                "--template",
                "Hi {first_name}, thanks for being a VIP at {clinic_name}!",
            ).stdout
        )
        campaign_id = str(created["id"])
        assert created["segment"] == {"tags": ["vip"]}

        bad = cli("create", "--clinic", slug, "--name", "x", "--template", "Hi {frist_name}", ok=False)
        assert bad.returncode == 2 and "unknown placeholder(s): {frist_name}" in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1

        shown = json.loads(cli("preview", "--clinic", slug, campaign_id, "--json").stdout)
        assert (shown["matched"], shown["recipients"], shown["excluded"]["opted_out"]) == (3, 2, 1)
        assert shown["samples"] == [
            "Hi Ana, thanks for being a VIP at Cli Spa! Txt STOP to end.",
            "Hi Bo, thanks for being a VIP at Cli Spa! Txt STOP to end.",
        ]
        assert shown["segments"] == 2 and shown["cost_usd"] == 0.0158
        human = cli("preview", "--clinic", slug, campaign_id).stdout
        assert "recipients:       2" in human and "excluded opted_out:" in human

        sent = cli("send", "--clinic", slug, campaign_id)
        assert "3/3" in sent.stderr.splitlines()[-1] and "[" not in sent.stdout  # the progress bar is on stderr
        assert "completed: 3 recipients, 2 sent, 0 failed, 1 excluded" in sent.stdout
        stack.wait_replies(phones["Ana Vip"], 1)
        stack.wait_replies(phones["Bo Vip"], 1)
        stack.wait_idle(clinic_id)
        assert not stack.replies_to(phones["Cy Vip"]) and not stack.replies_to(phones["Di Plain"])

        report = json.loads(cli("report", "--clinic", slug, campaign_id, "--json").stdout)
        assert report["recipients"] == 3 == sum(report["breakdown"].values())
        assert (report["sent"], report["excluded"]["opted_out"], report["failed"]) == (2, 1, 0)
        assert report["status"] == "completed"

        listed = json.loads(cli("list", "--clinic", slug, "--json").stdout)
        assert [(c["id"], c["status"], c["recipients"]) for c in listed] == [(int(campaign_id), "completed", 3)]
        refused = cli("pause", "--clinic", slug, campaign_id, ok=False)
        assert "is completed; only a sending or scheduled one can pause" in refused.stderr
