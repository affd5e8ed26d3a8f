"""Missed calls and photos through the real webhook, a real worker, real Postgres/Redis (Twilio faked at its API).

- a call nobody answers yields exactly one text — the same call posted twice, and its Dial action, still one —
  and the caller's reply continues that conversation; a STOPped number gets none; a bad signature records nothing;
- a photo (MMS) is acknowledged, fetched from Twilio with the account's credentials, stored, and shown to staff
  (``medspa staff show`` with its local path; the console API's message list and its photo endpoint, for staff of
  that clinic only); a photo with worrying words is an adverse reaction: the safety reply and an urgent page.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import text

from domain.staff_access import StaffRole
from medspa.settings import REPO_ROOT
from tests.fakes.openai_api import text_reply
from tests.fakes.twilio_api import twilio_signature
from tests.support.console import HARBOR, running_console
from tests.support.infra import wait_for
from tests.support.phones import random_phone
from tests.support.stack import (
    GLOW_CLINIC_ID,
    GLOW_NUMBER,
    TWILIO_SID,
    TWILIO_TOKEN,
    Stack,
    running_stack,
    settings_env,
)

ONCALL = "+14155550199"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00a-patients-photo" * 32


def _phone() -> str:
    return random_phone()


def _afternoon(stack: Stack) -> None:
    """Clinic-local 14:00 today: inside the hours a text may go out (the text-back respects quiet hours)."""
    zone = ZoneInfo("America/Los_Angeles")
    today = datetime.now(zone).date()
    stack.clock.set(datetime(today.year, today.month, today.day, 14, 0, tzinfo=zone))


def _call_form(caller: str, sid: str, **extra: str) -> dict[str, str]:
    return {
        "CallSid": sid,
        "AccountSid": TWILIO_SID,
        "From": caller,
        "To": GLOW_NUMBER,
        "CallStatus": "ringing",
        "Direction": "inbound",
        **extra,
    }


def _missed_calls(stack: Stack, caller: str) -> list[dict]:
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        rows = session.execute(
            text(
                """SELECT mc.status, mc.skip_reason, mc.reason, mc.conversation_id,
                          m.conversation_id AS history_conversation, m.role AS history_role,
                          m.meta->>'source' AS history_source, m.body AS history_body
                   FROM missed_calls mc LEFT JOIN outbox o ON o.id = mc.outbox_id
                   LEFT JOIN messages m ON m.id = (o.meta->>'message_id')::bigint
                   WHERE mc.from_e164 = :p"""
            ),
            {"p": caller},
        ).mappings()
        return [dict(r) for r in rows]


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


def test_a_missed_call_yields_exactly_one_text_and_the_reply_continues_it(stack):
    _afternoon(stack)
    caller = _phone()
    sid = "CA" + uuid.uuid4().hex

    first = stack.post_twilio("/webhooks/twilio/voice", _call_form(caller, sid))
    retry = stack.post_twilio("/webhooks/twilio/voice", _call_form(caller, sid))  # Twilio retrying the webhook
    dial = stack.post_twilio("/webhooks/twilio/voice/dial-status", _call_form(caller, sid, DialCallStatus="no-answer"))

    for response in (first, retry, dial):
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
        assert "<Say>" in response.text and "Glow MedSpa" in response.text, response.text
    (texted,) = stack.wait_replies(caller, 1)
    stack.wait_idle()
    assert stack.replies_to(caller) == [texted], "one call, one text"
    assert "Sorry we missed your call" in texted
    (record,) = _missed_calls(stack, caller)
    assert record["status"] == "texted" and record["reason"] == "not_forwarded"
    # The text is in the conversation's history, linked to its outbox row (what the agent reads on the reply).
    assert (record["history_role"], record["history_source"], record["history_body"]) == (
        "assistant",
        "missed_call",
        texted,
    )
    assert record["history_conversation"] == record["conversation_id"]

    stack.send_sms(GLOW_NUMBER, caller, "hi! can I book a hydrafacial?")
    replies = stack.wait_replies(caller, 2)
    stack.wait_idle()
    assert replies[1] != texted and len(replies) == 2, "the agent answered the reply"
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        conversations = (
            session.execute(
                text("""SELECT DISTINCT m.conversation_id FROM messages m JOIN conversations c ON c.id = m.conversation_id
                    JOIN clients cl ON cl.id = c.client_id WHERE cl.phone_e164 = :p"""),
                {"p": caller},
            )
            .scalars()
            .all()
        )
    assert conversations == [record["conversation_id"]], "the text and the reply are one conversation"


def test_the_front_desk_answering_means_no_text_and_a_no_answer_means_one(stack):
    _afternoon(stack)
    answered, unanswered = _phone(), _phone()
    picked_up = stack.post_twilio(
        "/webhooks/twilio/voice/dial-status",
        _call_form(answered, "CA" + uuid.uuid4().hex, DialCallStatus="completed"),
    )
    busy = stack.post_twilio(
        "/webhooks/twilio/voice/dial-status", _call_form(unanswered, "CA" + uuid.uuid4().hex, DialCallStatus="busy")
    )
    assert picked_up.status_code == 200 and "<Say>" not in picked_up.text
    assert busy.status_code == 200 and "<Say>" in busy.text
    stack.wait_replies(unanswered, 1)
    stack.wait_idle()
    assert stack.replies_to(answered) == [] and _missed_calls(stack, answered) == []
    assert len(stack.replies_to(unanswered)) == 1 and _missed_calls(stack, unanswered)[0]["reason"] == "busy"


def test_a_stopped_number_gets_no_text_back(stack):
    _afternoon(stack)
    caller = _phone()
    stack.send_sms(GLOW_NUMBER, caller, "STOP")
    stack.wait_replies(caller, 1)
    response = stack.post_twilio("/webhooks/twilio/voice", _call_form(caller, "CA" + uuid.uuid4().hex))
    assert response.status_code == 200
    wait_for(lambda: _missed_calls(stack, caller), 30, what="the missed call to be handled")
    stack.wait_idle()
    assert len(stack.replies_to(caller)) == 1, "only the STOP confirmation"
    assert [(r["status"], r["skip_reason"]) for r in _missed_calls(stack, caller)] == [("skipped", "opted_out")]


def test_a_call_with_a_bad_signature_records_nothing(stack):
    caller = _phone()
    form = _call_form(caller, "CA" + uuid.uuid4().hex)
    forged = twilio_signature("not-the-token", stack.base_url + "/webhooks/twilio/voice", form)
    response = stack.post_twilio("/webhooks/twilio/voice", form, signature=forged)
    missing = stack.post_twilio("/webhooks/twilio/voice", form, signature="")
    assert response.status_code == 403 and missing.status_code == 403
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        recorded = session.execute(
            text("SELECT count(*) FROM inbox_events WHERE provider_event_id = :s"), {"s": form["CallSid"]}
        ).scalar()
    assert recorded == 0


def _mms(stack: Stack, phone: str, body: str, url: str) -> None:
    form = stack.sms_form(GLOW_NUMBER, phone, body) | {
        "NumMedia": "1",
        "MediaUrl0": url,
        "MediaContentType0": "image/png",
    }
    response = stack.post_twilio("/webhooks/twilio/sms", form)
    assert response.status_code == 200, response.text


def _stored_media(stack: Stack, phone: str) -> list[dict]:
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        rows = session.execute(
            text("""SELECT mm.id, mm.status, mm.storage_key, mm.conversation_id FROM message_media mm
                    JOIN conversations c ON c.id = mm.conversation_id JOIN clients cl ON cl.id = c.client_id
                    WHERE cl.phone_e164 = :p AND mm.status = 'stored'"""),
            {"p": phone},
        ).mappings()
        return [dict(r) for r in rows]


def test_a_photo_is_acknowledged_stored_and_shown_to_staff(stack, infra, tmp_path):
    _afternoon(stack)
    phone = _phone()
    url = stack.twilio.add_media("image/png", PNG)
    _mms(stack, phone, "", url)

    (ack,) = stack.wait_replies(phone, 1)
    assert "photo" in ack.lower(), ack
    (media,) = wait_for(lambda: _stored_media(stack, phone), 30, what="the photo to be stored")
    stack.wait_idle()
    assert len(stack.replies_to(phone)) == 1

    shown = staff(stack, "show", str(media["conversation_id"]), "--clinic", "glow-medspa")
    assert shown.returncode == 0, shown.stderr
    path_line = next(line for line in shown.stdout.splitlines() if "photo 1/1" in line)
    assert Path(path_line.split(": ", 1)[1]).read_bytes() == PNG
    as_json = json.loads(
        staff(stack, "show", str(media["conversation_id"]), "--clinic", "glow-medspa", "--json").stdout
    )
    assert [m["media"][0]["status"] for m in as_json["messages"] if m["media"]] == ["stored"]

    with running_console(
        infra, tmp_path / "console", with_oidc=False, media_storage_dir=stack.settings.media_dir
    ) as console:
        http, _ = console.sign_in(console.add_staff(GLOW_CLINIC_ID, StaffRole.FRONT_DESK))
        listed = http.get(f"/api/v1/clinics/1/conversations/{media['conversation_id']}/messages")
        assert listed.status_code == 200, listed.text
        (item,) = [m for m in listed.json()["items"] if m["media"]]
        photo_url = item["media"][0]["url"]
        photo = http.get(photo_url)
        assert photo.status_code == 200 and photo.content == PNG
        assert photo.headers["content-type"] == "image/png" and photo.headers["cache-control"] == "no-store"
        # The conversation page shows it with the transcript (the same authenticated URL).
        page = http.get(f"/clinics/1/conversations/{media['conversation_id']}")
        assert page.status_code == 200 and f'<img src="{photo_url}"' in page.text

        # Staff of another clinic: not theirs (its membership cannot name clinic 1; clinic 2 has no such photo).
        other, _ = console.sign_in(console.add_staff(HARBOR, StaffRole.OWNER))
        assert other.get(photo_url).status_code == 403
        assert other.get(photo_url.replace("/clinics/1/", f"/clinics/{HARBOR}/")).status_code == 404
        assert console.client().get(photo_url).status_code == 401


def test_a_photo_with_worrying_words_escalates_like_an_adverse_reaction(stack):
    _afternoon(stack)
    phone = _phone()
    _mms(stack, phone, "is this normal? 2 days after filler", stack.twilio.add_media("image/png", PNG))
    _mms(stack, phone, "lots of swelling", stack.twilio.add_media("image/png", PNG))

    replies = stack.wait_replies(phone, 1)
    wait_for(lambda: [b for b in stack.replies_to(ONCALL) if "URGENT" in b], 30, what="the on-call page")
    stack.wait_idle()
    safety = [r for r in stack.replies_to(phone) if "call the clinic now" in r]
    assert safety and "photo" in safety[0].lower(), replies
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        conv = session.execute(
            text("""SELECT c.agent_state, c.handoff_urgency FROM conversations c JOIN clients cl ON cl.id = c.client_id
                    WHERE cl.phone_e164 = :p"""),
            {"p": phone},
        ).one()
    assert conv[0].lower() == "handoff" and conv[1] == "urgent"
    wait_for(lambda: len(_stored_media(stack, phone)) == 2, 30, what="both photos stored")


def test_the_model_reads_the_words_of_a_photo_message_never_the_photo(infra, tmp_path):
    with running_stack(infra, tmp_path, model_provider="openai") as (stack, _container):
        _afternoon(stack)
        stack.openai.responder = lambda body: text_reply("Happy to help with a touch-up!")
        phone = _phone()
        url = stack.twilio.add_media("image/png", PNG)
        _mms(stack, phone, "here is my result from last month, can I book a touch up?", url)

        ack, answer = stack.wait_replies(phone, 2)
        wait_for(lambda: _stored_media(stack, phone), 30, what="the photo to be stored")
        stack.wait_idle()
        assert "photo" in ack.lower() and answer == "Happy to help with a touch-up!"
        chats = [r for r in stack.openai.requests if r.path.endswith("/chat/completions")]
        assert chats, "the words went to the model"
        sent = b"".join(r.body for r in chats)
        assert b"can I book a touch up" in sent
        assert b"api.twilio.com" not in sent and b"image_url" not in sent and PNG not in sent, "the photo did not"


def test_a_clinic_with_a_vision_model_shows_it_the_photo(infra, owner_engine, tmp_path):
    harbor_number = "+12125550123"
    with owner_engine.begin() as conn:
        conn.execute(
            text(
                """UPDATE clinics SET policies = coalesce(policies, '{}'::jsonb) || '{"vision_model": true}'::jsonb WHERE id = :id"""
            ),
            {"id": HARBOR},
        )
    # A Redis database of its own: a worker of another stack still running in this session caches clinics for a
    # minute and would read Harbor without the vision switch just set, so only this stack's worker may take the turn.
    own_redis = infra.redis_url.rsplit("/", 1)[0] + "/9"
    try:
        with running_stack(infra, tmp_path, model_provider="openai", redis_url=own_redis) as (stack, _container):
            _afternoon(stack)
            stack.openai.responder = lambda body: text_reply("That looks like a lovely result!")
            phone = _phone()
            form = stack.sms_form(harbor_number, phone, "how does it look?") | {
                "NumMedia": "1",
                "MediaUrl0": stack.twilio.add_media("image/png", PNG),
                "MediaContentType0": "image/png",
            }
            assert stack.post_twilio("/webhooks/twilio/sms", form).status_code == 200

            (answer,) = stack.wait_replies(phone, 1)
            stack.wait_idle(clinic_id=HARBOR)
            assert answer == "That looks like a lovely result!", "the model answered; no canned acknowledgement"
            chats = [r.json() for r in stack.openai.requests if r.path.endswith("/chat/completions")]
            # This patient's turn (the shared Redis may hand the worker a leftover turn of an earlier test first).
            last_users = [[m for m in chat["messages"] if m["role"] == "user"][-1] for chat in chats]
            (last_user,) = [m for m in last_users if "how does it look?" in json.dumps(m["content"])][:1]
            assert isinstance(last_user["content"], list), "the photo went to the model as an image part"
            parts = {p["type"]: p for p in last_user["content"]}
            assert parts["text"]["text"] == "how does it look?"
            expected = "data:image/png;base64," + base64.b64encode(PNG).decode()
            assert parts["image_url"]["image_url"]["url"] == expected
    finally:
        with owner_engine.begin() as conn:
            conn.execute(text("UPDATE clinics SET policies = policies - 'vision_model' WHERE id = :id"), {"id": HARBOR})


def test_during_opening_hours_a_forwarding_clinic_rings_the_front_desk(stack, owner_engine):
    always_open = json.dumps({day: [["00:00", "23:59"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    with owner_engine.begin() as conn:
        saved = conn.execute(
            text("SELECT business_hours, holidays, policies FROM clinics WHERE id = :id"), {"id": HARBOR}
        ).one()
        conn.execute(
            text("""UPDATE clinics SET business_hours = CAST(:hours AS jsonb), holidays = '[]'::jsonb,
                           policies = policies || '{"missed_calls": {"forward_during_hours": true, "ring_seconds": 15}}'
                    WHERE id = :id"""),
            {"hours": always_open, "id": HARBOR},
        )
    try:
        caller = _phone()
        form = _call_form(caller, "CA" + uuid.uuid4().hex) | {"To": "+12125550123"}
        response = stack.post_twilio("/webhooks/twilio/voice", form)
        assert response.status_code == 200, response.text
        assert f'<Dial action="{stack.base_url}/webhooks/twilio/voice/dial-status"' in response.text
        assert 'timeout="15"' in response.text and "<Number>+12125550100</Number>" in response.text
        assert "<Say>" not in response.text
        with stack.database.tenant_scope(HARBOR) as session:
            recorded = session.execute(
                text("SELECT count(*) FROM inbox_events WHERE provider_event_id = :s"), {"s": form["CallSid"]}
            ).scalar()
        assert recorded == 0, "a ringing call is not a missed one (the Dial action decides)"
    finally:
        with owner_engine.begin() as conn:
            conn.execute(
                text("""UPDATE clinics SET business_hours = CAST(:h AS jsonb), holidays = CAST(:d AS jsonb),
                               policies = CAST(:p AS jsonb) WHERE id = :id"""),
                {"h": json.dumps(saved[0]), "d": json.dumps(saved[1]), "p": json.dumps(saved[2]), "id": HARBOR},
            )


def test_a_call_is_answered_and_recorded_while_redis_is_frozen_and_handled_after(infra, tmp_path):
    import dataclasses
    import time

    from tests.support.infra import private_redis
    from tests.support.stack import running_process_stack

    with private_redis() as redis_server:
        own = dataclasses.replace(infra, redis_url=redis_server.url)
        # No scheduler (no sweeper): the app's own enqueue must deliver what it recorded during the freeze.
        with running_process_stack(own, tmp_path, workers=((1, 2),), scheduler=False) as procs:
            stack = procs.stack
            caller = _phone()
            form = _call_form(caller, "CA" + uuid.uuid4().hex)
            url = stack.base_url + "/webhooks/twilio/voice"
            with redis_server.frozen():
                started = time.monotonic()
                response = stack.http.post(
                    url, data=form, headers={"X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, url, form)}
                )
                elapsed = time.monotonic() - started
                assert response.status_code == 200 and "<Say>" in response.text, response.text
                assert elapsed < 1.0, elapsed
                with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
                    recorded = session.execute(
                        text("SELECT count(*) FROM inbox_events WHERE source = 'voice' AND provider_event_id = :s"),
                        {"s": form["CallSid"]},
                    ).scalar()
                assert recorded == 1, "the 200 meant: in Postgres"
            (handled,) = wait_for(lambda: _missed_calls(stack, caller), 60, what="the call handled after the thaw")
            assert handled["status"] == "texted"  # (sent now, or deferred past quiet hours by the outbox)


def test_a_call_at_night_is_texted_back_in_the_morning_not_at_night(stack):
    zone = ZoneInfo("America/Los_Angeles")
    today = datetime.now(zone).date()
    stack.clock.set(datetime(today.year, today.month, today.day, 23, 30, tzinfo=zone))
    caller = _phone()
    assert stack.post_twilio("/webhooks/twilio/voice", _call_form(caller, "CA" + uuid.uuid4().hex)).status_code == 200
    wait_for(lambda: _missed_calls(stack, caller), 30, what="the missed call to be handled")
    stack.wait_idle()
    assert stack.replies_to(caller) == [], "nothing at 23:30"
    with stack.database.tenant_scope(GLOW_CLINIC_ID) as session:
        status, not_before = session.execute(
            text("SELECT status, not_before FROM outbox WHERE to_address = :p AND kind = 'missed_call'"),
            {"p": caller},
        ).one()
    assert status == "queued" and not_before.astimezone(zone) == datetime(
        today.year, today.month, today.day, 8, 0, tzinfo=zone
    ) + timedelta(days=1)
    listed = json.loads(staff(stack, "missed-calls", "--clinic", "glow-medspa", "--json").stdout)["missed_calls"]
    assert any(row["from_e164"] == caller and row["status"] == "texted" for row in listed)
