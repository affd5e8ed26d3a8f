"""STOP/START/HELP keywords, quiet hours and compliance templates."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from domain.audience import MARKETING_END, MARKETING_START
from domain.compliance import (
    ConsentError,
    ConsentKind,
    ConsentRecord,
    ConsentScope,
    ConsentSource,
    KeywordIntent,
    classify_keyword,
    help_reply,
    keyword_consent,
    next_allowed_send_time,
    opt_in_confirmation,
    opt_out_confirmation,
)
from domain.segments import is_gsm7

LA = "America/Los_Angeles"
WINDOW = (MARKETING_START, MARKETING_END)  # the marketing window, the send decision's (domain.audience)


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        "stop",
        "Stop.",
        " stop!! ",
        "STOP 🛑",
        "StopAll",
        "STOP ALL",
        "unsubscribe",
        "Cancel",
        "END",
        "quit",
        "REVOKE",
        "optout",
        "opt-out",
        "Opt out",
        "alto",
        "PARAR",
        "detener",
        "baja",
        "cancelar",
        "stop please",
        "Please stop",
        "STOP STOP STOP",
        "stop it now!!",
        "stop texting me",
        "no more messages",
        "Please don't text me",
        "please don’t text me again",
        "remove me from your list",
        "Remove me from your mailing list.",
        "unsubscribe me",
        "take me off your list",
        "Do not contact me",
        "deja de enviarme mensajes",
        "no me envíes más mensajes",
        "Dame de baja por favor",
        "I want to opt out",
    ],
)
def test_opt_out(body: str) -> None:
    assert classify_keyword(body) is KeywordIntent.OPT_OUT


@pytest.mark.parametrize(
    "body",
    [
        "cancel my appointment",
        "stop by tomorrow?",
        "can I cancel?",
        "I need to cancel friday",
        "Can I stop by to pick up a product?",
        "what time do you end today",
        "quit smoking before filler?",
        "cancel please",
        "Hi",
        "",
        "   ",
        "🛑",
        "yes",
        "stopped bleeding?",
        "don't stop me now",
    ],
)
def test_not_opt_out(body: str) -> None:
    assert classify_keyword(body) is not KeywordIntent.OPT_OUT


@pytest.mark.parametrize("body", ["START", "start", "Unstop", "subscribe", "COMENZAR", "iniciar", "Start!", "opt in"])
def test_opt_in(body: str) -> None:
    assert classify_keyword(body) is KeywordIntent.OPT_IN


@pytest.mark.parametrize("body", ["YES", "yes", "Yes!", "Sí", "yes please"])
def test_yes_is_opt_in_only_when_awaiting(body: str) -> None:
    assert classify_keyword(body, awaiting_opt_in=True) is KeywordIntent.OPT_IN
    assert classify_keyword(body) is None


@pytest.mark.parametrize("body", ["HELP", "help", "Help?", "INFO", "ayuda", " HELP! "])
def test_help(body: str) -> None:
    assert classify_keyword(body) is KeywordIntent.HELP


@pytest.mark.parametrize("body", ["help me book botox", "I need info about filler", "start time?"])
def test_keywords_inside_sentences_are_dialogue(body: str) -> None:
    assert classify_keyword(body) is None


# ---------------------------------------------------------------- quiet hours
def _la(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(LA))


@pytest.mark.parametrize(
    ("local_now", "expected_local"),
    [
        (_la(2026, 6, 10, 12), _la(2026, 6, 10, 12)),  # inside: now
        (_la(2026, 6, 10, 8), _la(2026, 6, 10, 8)),  # start is inclusive
        (_la(2026, 6, 10, 7, 59), _la(2026, 6, 10, 8)),  # early morning: today 08:00
        (_la(2026, 6, 10, 21), _la(2026, 6, 11, 8)),  # end is exclusive: tomorrow 08:00
        (_la(2026, 6, 10, 23, 30), _la(2026, 6, 11, 8)),
        (_la(2026, 12, 31, 22), _la(2027, 1, 1, 8)),  # year rollover
        # DST: the night of 2026-11-01 is 25 h long; 08:00 local is 16:00 UTC after it
        (_la(2026, 10, 31, 22), _la(2026, 11, 1, 8)),
        # DST: the night of 2026-03-08 is 23 h long; 08:00 local is 15:00 UTC after it
        (_la(2026, 3, 7, 22), _la(2026, 3, 8, 8)),
    ],
)
def test_next_allowed_send_time(local_now: datetime, expected_local: datetime) -> None:
    result = next_allowed_send_time(local_now.astimezone(UTC), LA, *WINDOW)
    assert result == expected_local
    assert result.utcoffset() == UTC.utcoffset(None)  # returned in UTC


def test_next_allowed_across_dst_has_correct_utc_hour() -> None:
    fall = next_allowed_send_time(datetime(2026, 11, 1, 6, 0, tzinfo=UTC), LA, *WINDOW)  # 23:00 PDT Oct 31
    spring = next_allowed_send_time(datetime(2026, 3, 8, 6, 0, tzinfo=UTC), LA, *WINDOW)  # 22:00 PST Mar 7
    assert fall == datetime(2026, 11, 1, 16, 0, tzinfo=UTC)  # 08:00 PST
    assert spring == datetime(2026, 3, 8, 15, 0, tzinfo=UTC)  # 08:00 PDT


def test_recipient_timezone_decides() -> None:
    now = datetime(2026, 6, 10, 13, 30, tzinfo=UTC)  # 09:30 New York, 06:30 Los Angeles
    assert next_allowed_send_time(now, "America/New_York", *WINDOW) == now
    assert next_allowed_send_time(now, LA, *WINDOW) == _la(2026, 6, 10, 8)


def test_custom_window() -> None:
    now = _la(2026, 6, 10, 19).astimezone(UTC)
    assert next_allowed_send_time(now, LA, start=time(9), end=time(18)) == _la(2026, 6, 11, 9)


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError):
        next_allowed_send_time(datetime(2026, 6, 10, 12), LA, *WINDOW)


def test_inverted_window_is_rejected() -> None:
    with pytest.raises(ValueError):
        next_allowed_send_time(datetime(2026, 6, 10, 12, tzinfo=UTC), LA, start=time(21), end=time(8))


# ---------------------------------------------------------------- templates
def test_help_reply() -> None:
    text = help_reply("Glow Med Spa", "+15551234567")
    assert "Glow Med Spa" in text and "+15551234567" in text
    assert "Reply STOP to opt out" in text
    assert is_gsm7(text) and len(text) <= 160


def test_opt_out_confirmation() -> None:
    text = opt_out_confirmation("Glow Med Spa")
    assert "unsubscribed" in text and "START" in text
    assert is_gsm7(text) and len(text) <= 160


def test_opt_in_confirmation() -> None:
    text = opt_in_confirmation("Glow Med Spa")
    assert "Reply STOP to opt out" in text and "HELP for help" in text
    assert is_gsm7(text) and len(text) <= 160


def test_templates_make_clinic_name_gsm_friendly() -> None:
    assert is_gsm7(opt_out_confirmation("Anna’s Spa – Downtown"))


# ---------------------------------------------------------------- consent ledger
def test_stop_revokes_everything_and_start_restores_appointment_texts_only() -> None:
    stop = keyword_consent(KeywordIntent.OPT_OUT, "STOP")
    start = keyword_consent(KeywordIntent.OPT_IN, "START")
    assert (stop.scope, start.scope) == (ConsentScope.ALL, ConsentScope.TRANSACTIONAL)
    assert stop.client_changes() == {"consent_state": "opted_out"}  # a marketing grant is suspended, not erased
    assert start.client_changes() == {"consent_state": "opted_in"}  # never a marketing grant
    assert keyword_consent(KeywordIntent.HELP, "HELP").client_changes() == {}


@pytest.mark.parametrize("source", [ConsentSource.SMS_KEYWORD, ConsentSource.CARRIER])
def test_a_keyword_or_the_carrier_can_never_grant_marketing(source: ConsentSource) -> None:
    with pytest.raises(ConsentError, match="explicit grant"):
        ConsentRecord(ConsentKind.OPT_IN, ConsentScope.MARKETING, source, "START")


def test_a_marketing_grant_needs_its_wording() -> None:
    with pytest.raises(ConsentError, match="wording"):
        ConsentRecord(ConsentKind.OPT_IN, ConsentScope.MARKETING, ConsentSource.STAFF, "  ")
    grant = ConsentRecord(ConsentKind.OPT_IN, ConsentScope.MARKETING, ConsentSource.WEB_FORM, "Text me offers")
    assert grant.client_changes() == {"marketing_consent": "granted"}
    revoke = ConsentRecord(ConsentKind.OPT_OUT, ConsentScope.MARKETING, ConsentSource.STAFF, "No offers please")
    assert revoke.client_changes() == {"marketing_consent": "revoked"}


def test_nothing_grants_everything_and_a_request_grants_nothing() -> None:
    with pytest.raises(ConsentError):
        ConsentRecord(ConsentKind.OPT_IN, ConsentScope.ALL, ConsentSource.STAFF, "everything")
    with pytest.raises(ConsentError):
        ConsentRecord(ConsentKind.OPT_OUT, ConsentScope.TRANSACTIONAL, ConsentSource.STAFF, "no reminders")
    request = ConsentRecord(ConsentKind.REQUEST, ConsentScope.TRANSACTIONAL, ConsentSource.WEB_FORM, "text me")
    assert request.client_changes() == {}


def test_the_start_confirmation_promises_offers_only_to_who_granted_them() -> None:
    assert "offers" not in opt_in_confirmation("Glow")
    assert "appointment texts and offers" in opt_in_confirmation("Glow", marketing=True)
