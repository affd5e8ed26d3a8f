"""Staff takeover end to end: the agent hands off → staff reply reaches the patient → the agent stays silent
→ staff hand back → the agent answers again.  The staff commands run as real subprocesses (`medspa staff …`)
against the same Postgres and Redis as the running stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sqlalchemy import text

from medspa.settings import REPO_ROOT
from tests.e2e.test_cli_clinic import assert_one_line_error, check_help
from tests.support.infra import wait_for
from tests.support.phones import random_phone
from tests.support.stack import GLOW_CLINIC_ID, GLOW_NUMBER, Stack, settings_env

ONCALL = "+14155550199"
CLINIC = "glow-medspa"


def _phone() -> str:
    return random_phone()


def staff(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ.copy() | settings_env(stack.settings)
    return subprocess.run(
        [sys.executable, "-m", "scripts.cli", "staff", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _conversation(stack: Stack, phone: str) -> dict:
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        return dict(
            session.execute(
                text(
                    """SELECT c.id, c.agent_state, c.handoff_reason, c.handoff_urgency FROM conversations c
               JOIN clients cl ON cl.id = c.client_id WHERE cl.phone_e164 = :p AND c.channel = 'sms'"""
                ),
                {"p": phone},
            )
            .mappings()
            .one()
        )


def _oncall_notices(stack: Stack, conversation_id: int) -> list[str]:
    return [body for body in stack.replies_to(ONCALL) if f"conversation {conversation_id} " in body]


def test_emergency_handoff_staff_reply_silence_then_handback(stack):
    phone = _phone()
    stack.send_sms(GLOW_NUMBER, phone, "my lips are really swollen and I can't breathe")
    first = stack.wait_replies(phone, 1)
    assert "911" in first[0]
    conv = _conversation(stack, phone)
    assert conv["agent_state"].lower() == "handoff" and conv["handoff_urgency"] == "emergency"
    notices = wait_for(lambda: _oncall_notices(stack, conv["id"]), 30, what="the on-call notification")
    assert len(notices) == 1 and "EMERGENCY" in notices[0]

    # Staff see it at the top of the attention list (no urgency ranks above emergency) ...
    listed = staff(stack, "attention", "--clinic", CLINIC, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    ours = [r for r in rows if r["conversation_id"] == conv["id"]]
    assert len(ours) == 1 and ours[0]["why"] == "handoff" and ours[0]["urgency"] == "emergency"
    assert rows[0]["urgency"] == "emergency"
    order = {"emergency": 0, "urgent": 1, "normal": 2, "low": 3}
    ranks = [order[r["urgency"]] for r in rows]
    assert ranks == sorted(ranks), "attention list is not ordered by urgency"

    # ... and reply as staff: through the outbox, to the patient's phone, once.
    staff_text = "This is Dana at Glow. Please call 911 now; we are calling you as well."
    replied = staff(stack, "reply", str(conv["id"]), "--clinic", CLINIC, "--text", staff_text, "--as", "Dana")
    assert replied.returncode == 0, replied.stderr
    assert stack.wait_replies(phone, 2)[1] == staff_text
    sent = [m for m in stack.twilio.messages if m.to == phone and m.body == staff_text]
    assert len(sent) == 1 and sent[0].from_ == GLOW_NUMBER
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        outbox = session.execute(
            text("SELECT kind, channel, to_address, status FROM outbox WHERE conversation_id = :c AND kind = 'staff'"),
            {"c": conv["id"]},
        ).all()
        staff_messages = session.execute(
            text("SELECT direction, meta->>'staff' FROM messages WHERE conversation_id = :c AND role = 'staff'"),
            {"c": conv["id"]},
        ).all()
    assert [tuple(r) for r in outbox] == [("staff", "sms", phone, "sent")]
    assert [tuple(r) for r in staff_messages] == [("outbound", "Dana")]

    # The patient answers: the agent stays silent while staff have the conversation.
    stack.send_sms(GLOW_NUMBER, phone, "ok thank you, should I take an antihistamine?")
    stack.wait_idle()
    assert len(stack.replies_to(phone)) == 2
    assert _conversation(stack, phone)["agent_state"].lower() == "handoff"

    shown = staff(stack, "show", str(conv["id"]), "--clinic", CLINIC)
    assert shown.returncode == 0, shown.stderr
    assert "emergency" in shown.stdout and "staff (Dana): " + staff_text in shown.stdout
    assert "patient: ok thank you, should I take an antihistamine?" in shown.stdout
    assert shown.stdout.index("patient: my lips") < shown.stdout.index("staff (Dana)")

    handed = staff(stack, "handback", str(conv["id"]), "--clinic", CLINIC)
    assert handed.returncode == 0, handed.stderr
    after = _conversation(stack, phone)
    assert after["agent_state"] == "idle" and after["handoff_reason"] == "" and after["handoff_urgency"] is None
    listed = json.loads(staff(stack, "attention", "--clinic", CLINIC, "--json").stdout)
    assert conv["id"] not in [r["conversation_id"] for r in listed]

    stack.send_sms(GLOW_NUMBER, phone, "what are your hours on saturday?")
    replies = stack.wait_replies(phone, 3)
    assert replies[2] not in (staff_text, first[0])
    stack.wait_idle()
    assert len(stack.replies_to(phone)) == 3


def test_asking_for_a_person_pause_and_handback(stack):
    phone = _phone()
    stack.send_sms(GLOW_NUMBER, phone, "I want to talk to a person")
    stack.wait_replies(phone, 1)
    stack.wait_idle()
    conv = _conversation(stack, phone)
    assert conv["agent_state"].lower() == "handoff" and conv["handoff_urgency"] == "normal"
    assert _oncall_notices(stack, conv["id"]) == [], "normal handoffs do not page the on-call phone"
    table = staff(stack, "attention", "--clinic", CLINIC)
    assert table.returncode == 0 and table.stdout.startswith("CONVERSATION"), table.stderr
    assert any(line.split()[0] == str(conv["id"]) for line in table.stdout.splitlines()[1:])

    assert staff(stack, "handback", str(conv["id"]), "--clinic", CLINIC).returncode == 0
    stack.send_sms(GLOW_NUMBER, phone, "what are your hours?")
    stack.wait_replies(phone, 2)

    paused = staff(stack, "pause", str(conv["id"]), "--clinic", CLINIC)
    assert paused.returncode == 0, paused.stderr
    conv = _conversation(stack, phone)
    assert conv["agent_state"] == "handoff" and conv["handoff_reason"] == "paused by staff"
    stack.send_sms(GLOW_NUMBER, phone, "hello? anyone there?")
    stack.wait_idle()
    assert len(stack.replies_to(phone)) == 2

    assert staff(stack, "handback", str(conv["id"]), "--clinic", CLINIC).returncode == 0
    stack.send_sms(GLOW_NUMBER, phone, "do you do lip filler?")
    stack.wait_replies(phone, 3)


def test_staff_commands_fail_with_one_clear_line(stack):
    assert_one_line_error(
        staff(stack, "reply", "987654321", "--clinic", CLINIC, "--text", "hi"), "no conversation 987654321"
    )
    assert_one_line_error(staff(stack, "show", "1", "--clinic", "no-such-clinic"), "no clinic")
    # Row-level security: another clinic's conversation is invisible, not merely refused.
    with stack.database.tenant_scope(2) as session:
        client_id = session.execute(
            text("INSERT INTO clients (clinic_id, phone_e164) VALUES (2, :p) RETURNING id"), {"p": _phone()}
        ).scalar_one()
        other = session.execute(
            text("INSERT INTO conversations (clinic_id, client_id, channel) VALUES (2, :c, 'sms') RETURNING id"),
            {"c": client_id},
        ).scalar_one()
    assert_one_line_error(staff(stack, "pause", str(other), "--clinic", CLINIC), f"no conversation {other}")


def test_every_staff_and_drills_command_has_help(infra, capsys):
    check_help(infra, "staff", capsys)
    check_help(infra, "drills", capsys)
