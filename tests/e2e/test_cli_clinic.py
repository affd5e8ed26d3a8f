"""`medspa clinic …` run the way staff run it (a subprocess) against the real migrated Postgres."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, text

from medspa.services import Infrastructure
from medspa.settings import REPO_ROOT
from tests.support.phones import random_phone

EXAMPLE = REPO_ROOT / "clinics" / "example-new-clinic.yaml"


# ---------------------------------------------------------------------------------------------- helpers
def medspa(infra: Infrastructure, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = os.environ.copy() | infra.as_env() | {"LOCAL_EMBEDDINGS": "false", "OPENAI_API_KEY": ""}
    return subprocess.run(
        [sys.executable, "-m", "scripts.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medspa: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def unique_number() -> str:
    # 555-01xx numbers are fictional but valid; area codes vary so parallel sessions don't collide.
    n = uuid.uuid4().int
    return f"+1{('503', '971', '541', '360')[n % 4]}55501{n % 100:02d}"


def new_clinic_file(tmp_path: Path, owner_engine: Engine, **edits: Any) -> tuple[Path, dict[str, Any]]:
    """The example clinic under a fresh slug and a free SMS number."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["slug"] = f"test-{uuid.uuid4().hex[:8]}"
    data["public_key"] = data["slug"] + "-public"
    data["name"] = f"Willow Test {data['slug'][-4:]}"
    with owner_engine.connect() as conn:
        taken = set(conn.execute(text("SELECT e164 FROM clinic_phone_numbers")).scalars())
    number = next(n for n in iter(unique_number, None) if n not in taken)
    data["phone_numbers"]["sms"] = [number]
    data.update(edits)
    path = tmp_path / f"{data['slug']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, data


def directory_snapshot(owner_engine: Engine) -> dict[str, Any]:
    """Everything an apply could write, as counts and checksums (to prove nothing was half-written)."""
    with owner_engine.connect() as conn:
        return {
            table: conn.execute(
                text(f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t")
            ).one()
            for table in (
                "clinics",
                "clinic_phone_numbers",
                "providers",
                "services",
                "provider_services",
                "automations",
            )
        }


def subcommands(group: str) -> list[tuple[list[str], argparse.ArgumentParser]]:
    from scripts.cli import build_parser

    def children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    group_parser = children(build_parser())[group]
    return [([group], group_parser)] + [([group, name], p) for name, p in children(group_parser).items()]


def check_help(infra: Infrastructure, group: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every subcommand's --help exits 0 and mentions each of its options and arguments.  The group's help runs
    as a real subprocess; the subcommands' through the same entry point in-process (argparse exits the same
    way, and the machine has two cores)."""
    from scripts.cli import main

    top = medspa(infra, group, "--help")
    assert top.returncode == 0 and top.stdout.startswith(f"usage: medspa {group}"), top.stderr
    commands = subcommands(group)
    assert len(commands) > 1
    for words, parser in commands:
        with pytest.raises(SystemExit) as exited:
            main([*words, "--help"])
        assert exited.value.code == 0
        shown = capsys.readouterr().out
        assert shown.startswith(f"usage: medspa {' '.join(words)}")
        for action in parser._actions:
            for option in action.option_strings:
                assert option in shown, f"{' '.join(words)} --help does not mention {option}"
            if not action.option_strings and action.help and action.help != argparse.SUPPRESS:
                assert str(action.metavar or action.dest) in shown
                assert action.help in " ".join(shown.split())


# ---------------------------------------------------------------------------------------------- tests
def test_every_clinic_command_has_accurate_help(infra: Infrastructure, capsys: pytest.CaptureFixture[str]) -> None:
    check_help(infra, "clinic", capsys)


def test_glow_file_is_the_seeded_demo_clinic(infra: Infrastructure) -> None:
    result = medspa(infra, "clinic", "apply", "clinics/glow-medspa.yaml", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "glow-medspa: no changes"


def test_onboard_reapply_and_edit_a_price(infra: Infrastructure, owner_engine: Engine, tmp_path: Path) -> None:
    path, data = new_clinic_file(tmp_path, owner_engine)
    slug, number = data["slug"], data["phone_numbers"]["sms"][0]

    created = medspa(infra, "clinic", "apply", str(path), "--yes")
    assert created.returncode == 0, created.stderr
    assert f"+ clinic {slug}" in created.stdout and f"{slug}: created" in created.stdout
    with owner_engine.connect() as conn:
        clinic = conn.execute(text("SELECT id, timezone, phone FROM clinics WHERE slug = :s"), {"s": slug}).one()
        conn.execute(text("SELECT set_config('app.clinic_id', :c, false)"), {"c": str(clinic.id)})
        assert clinic.phone == "+15035550100"
        assert (
            conn.execute(text("SELECT clinic_id FROM clinic_phone_numbers WHERE e164 = :n"), {"n": number}).scalar_one()
            == clinic.id
        )
        skills = conn.execute(
            text(
                """SELECT p.slug, array_agg(s.slug ORDER BY s.slug) FROM provider_services ps
               JOIN providers p ON p.id = ps.provider_id JOIN services s ON s.id = ps.service_id
               WHERE ps.clinic_id = :c GROUP BY p.slug ORDER BY p.slug"""
            ),
            {"c": clinic.id},
        ).all()
        assert [tuple(r) for r in skills] == [
            ("hana-okafor", ["consultation", "neurotoxin"]),
            ("lena-brandt", ["consultation", "dermaplaning", "signature-facial"]),
        ]

    before = directory_snapshot(owner_engine)
    again = medspa(infra, "clinic", "apply", str(path), "--yes")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"{slug}: no changes"
    assert directory_snapshot(owner_engine) == before

    data["services"][2]["price_cents"] = 9900
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    preview = medspa(infra, "clinic", "apply", str(path), "--dry-run")
    assert preview.returncode == 0, preview.stderr
    diff = [line.strip() for line in preview.stdout.splitlines() if line.startswith("  ")]
    assert diff == ["~ service dermaplaning: price_cents 9500 -> 9900"]
    assert directory_snapshot(owner_engine) == before

    applied = medspa(infra, "clinic", "apply", str(path), "--yes")
    assert applied.returncode == 0, applied.stderr
    with owner_engine.connect() as conn:
        conn.execute(text("SELECT set_config('app.clinic_id', :c, false)"), {"c": str(clinic.id)})
        assert (
            conn.execute(
                text("SELECT price_cents FROM services WHERE clinic_id = :c AND slug = 'dermaplaning'"),
                {"c": clinic.id},
            ).scalar_one()
            == 9900
        )

    exported = tmp_path / "exported.yaml"
    result = medspa(infra, "clinic", "export", slug, "-o", str(exported))
    assert result.returncode == 0, result.stderr
    assert "price_cents: 9900" in exported.read_text()
    assert medspa(infra, "clinic", "apply", str(exported)).stdout.strip() == f"{slug}: no changes"

    listed = medspa(infra, "clinic", "list", "--json")
    assert listed.returncode == 0
    row = next(c for c in yaml.safe_load(listed.stdout) if c["slug"] == slug)
    assert row["sms_numbers"] == [number] and row["services"] == 4 and row["providers"] == 2


def test_declining_the_prompt_changes_nothing(infra: Infrastructure, owner_engine: Engine, tmp_path: Path) -> None:
    path, data = new_clinic_file(tmp_path, owner_engine)
    before = directory_snapshot(owner_engine)
    result = medspa(infra, "clinic", "apply", str(path), stdin="n\n")
    assert result.returncode == 1
    assert f"Apply 11 change(s) to {data['slug']}? [y/N]" in result.stdout
    assert "nothing was changed" in result.stdout
    assert directory_snapshot(owner_engine) == before


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d.update(timezone="America/Springfield"), "unknown time zone 'America/Springfield'"),
        (lambda d: d["phone_numbers"].update(sms=["+1 555 555 0199"]), "invalid phone number '+1 555 555 0199'"),
        (lambda d: d["providers"][1].update(skills=["laser-hair-small"]), "unknown service 'laser-hair-small'"),
        (lambda d: d["phone_numbers"].update(sms=["+14155550123"]), "already belongs to clinic 'glow-medspa'"),
    ],
    ids=["timezone", "phone", "unknown-skill", "number-of-another-clinic"],
)
def test_bad_input_is_one_line_and_writes_nothing(
    infra: Infrastructure, owner_engine: Engine, tmp_path: Path, edit: Any, fragment: str
) -> None:
    path, data = new_clinic_file(tmp_path, owner_engine)
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    before = directory_snapshot(owner_engine)
    assert_one_line_error(medspa(infra, "clinic", "apply", str(path), "--yes"), fragment)
    assert directory_snapshot(owner_engine) == before


def test_new_clinic_number_is_answered_with_its_own_menu(
    infra: Infrastructure, owner_engine: Engine, tmp_path: Path
) -> None:
    from tests.support.stack import running_stack

    path, data = new_clinic_file(tmp_path, owner_engine)
    assert medspa(infra, "clinic", "apply", str(path), "--yes").returncode == 0
    number = data["phone_numbers"]["sms"][0]
    phone = random_phone()
    with running_stack(infra, tmp_path) as (stack, _):
        stack.send_sms(number, phone, "what services do you offer?")
        reply = stack.wait_replies(phone, 1)[0]
    assert "Dermaplaning" in reply and "Willow signature facial" in reply, reply
    assert "HydraFacial" not in reply  # not Glow MedSpa's menu
    sent = next(m for m in stack.twilio.messages if m.to == phone)
    assert sent.from_ == number
