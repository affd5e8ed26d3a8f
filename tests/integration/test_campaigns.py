"""Campaigns against the real database: preview counts, compliance at send time, deferral to 08:00 local,
pause within a batch, the report adding up.  Sends go through the real worker to the fake Twilio API."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from domain.audience import SegmentFilter
from domain.outbox import ClaimAction, Verdict
from tests.support.infra import wait_for
from tests.support.stack import running_stack
from worker.campaigns.lifecycle import (
    CampaignError,
    cancel_campaign,
    create_campaign,
    get_campaign,
    pause_campaign,
    resume_campaign,
    schedule_campaign,
    start_due_campaigns,
)
from worker.campaigns.report import report
from worker.campaigns.runner import run_campaign
from worker.campaigns.segments import preview, segment_sql
from worker.outbox.rows import Claim
from worker.outbox.store import PostgresOutbox

LA = ZoneInfo("America/Los_Angeles")
GLOW = 1


def la(day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=LA).astimezone(UTC)


def _phone() -> str:
    return "+1628" + str(uuid.uuid4().int % 10**7).zfill(7)


def make_clinic(owner_engine, *, cap: int = 2) -> dict:
    """A clinic of its own per test (the seeded database is shared by the whole session)."""
    slug = "camp-" + uuid.uuid4().hex[:8]
    number = _phone()
    with owner_engine.begin() as conn:
        clinic_id = conn.execute(
            text(
                """INSERT INTO clinics (slug, name, timezone, public_key, phone, business_hours, policies)
                   VALUES (:slug, 'Test Spa', 'America/Los_Angeles', :slug, '+14155550000',
                           '{"mon": [["09:00", "18:00"]], "tue": [["09:00", "18:00"]], "wed": [["09:00", "18:00"]],
                             "thu": [["09:00", "18:00"]], "fri": [["09:00", "18:00"]]}'::jsonb,
                           CAST(:policies AS jsonb)) RETURNING id"""
            ),
            {
                "slug": slug,
                "policies": f'{{"marketing_cap_per_week": {cap}, "opt_out_footer": "Reply STOP to opt out."}}',
            },
        ).scalar_one()
        conn.execute(
            text("INSERT INTO clinic_phone_numbers (clinic_id, e164) VALUES (:c, :n)"), {"c": clinic_id, "n": number}
        )
        provider_id = conn.execute(
            text("INSERT INTO providers (clinic_id, slug, name) VALUES (:c, 'pat', 'Pat Provider') RETURNING id"),
            {"c": clinic_id},
        ).scalar_one()
    return {"id": int(clinic_id), "slug": slug, "number": number, "provider_id": int(provider_id)}


def add_client(
    owner_engine,
    clinic_id: int,
    name: str,
    *,
    consent: str = "opted_in",
    marketing: str = "granted",
    tz: str | None = None,
    tags: list[str] | None = None,
) -> tuple[int, str]:
    phone = _phone()
    with owner_engine.begin() as conn:
        client_id = conn.execute(
            text(
                """INSERT INTO clients (clinic_id, phone_e164, name, consent_state, marketing_consent, timezone, tags)
                   VALUES (:c, :p, :n, :s, :m, :tz, CAST(:tags AS text[])) RETURNING id"""
            ),
            {"c": clinic_id, "p": phone, "n": name, "s": consent, "m": marketing, "tz": tz, "tags": tags or []},
        ).scalar_one()
    return int(client_id), phone


def _new_campaign(
    database,
    clinic_id: int,
    segment: SegmentFilter,
    *,
    cap: float | None = None,
    template: str = "Hi {first_name}, spring offers at {clinic_name}!",
) -> int:
    with database.tenant_scope(clinic_id) as session:
        return create_campaign(
            session, clinic_id, name="Spring", template=template, segment=segment, rate_cap_per_s=cap
        )


def _recipients(database, clinic_id: int, campaign_id: int) -> dict[int, dict]:
    with database.tenant_scope(clinic_id) as session:
        rows = (
            session.execute(
                text(
                    """SELECT r.client_id, r.status, r.exclusion_reason, r.send_after, o.body, o.status AS outbox_status
                   FROM campaign_recipients r LEFT JOIN outbox o ON o.id = r.outbox_id
                   WHERE r.campaign_id = :id"""
                ),
                {"id": campaign_id},
            )
            .mappings()
            .all()
        )
    return {int(r["client_id"]): dict(r) for r in rows}


# ------------------------------------------------------------------ preview
def test_preview_counts_match_the_database(database):
    now = la(datetime.now(LA).date(), time(12))
    segment = SegmentFilter.from_dict({"tags": ["vip", "lapsed"]})
    with database.tenant_scope(GLOW) as session:
        result = preview(
            session, GLOW, "Hi {first_name}, we saved you a spot {next_open_slot} at {clinic_name}.", segment, now
        )
        expected = (
            session.execute(
                text(
                    """SELECT count(*) AS matched,
                          count(*) FILTER (WHERE consent_state = 'opted_out') AS opted_out,
                          count(*) FILTER (WHERE consent_state <> 'opted_out'
                                             AND marketing_consent <> 'granted') AS no_consent,
                          count(*) FILTER (WHERE consent_state <> 'opted_out' AND marketing_consent = 'granted'
                                             AND phone_e164 IS NOT NULL
                                             AND sms_status = 'ok' AND (
                              SELECT count(*) FROM outbox o WHERE o.client_id = c.id
                                AND (o.kind = 'campaign' OR o.meta->>'marketing' = 'true')
                                AND o.status NOT IN ('cancelled', 'suppressed', 'failed', 'undelivered')
                                AND coalesce(o.sent_at, o.created_at) > :week_ago) < 2) AS eligible
                   FROM clients c WHERE clinic_id = :c AND tags && ARRAY['vip', 'lapsed']"""
                ),
                {"c": GLOW, "week_ago": now - timedelta(days=7)},
            )
            .mappings()
            .one()
        )
    assert expected["matched"] >= 5  # the demo data has VIP and lapsed clients, one of them opted out
    assert result.matched == expected["matched"]
    assert result.excluded["opted_out"] == expected["opted_out"]
    assert result.excluded["no_consent"] == expected["no_consent"]
    assert result.recipients == expected["eligible"]
    assert result.recipients + sum(result.excluded.values()) == result.matched
    assert result.deferred == 0  # noon local
    assert len(result.samples) == 3
    assert all(s.startswith("Hi ") and "Glow MedSpa" in s and "{" not in s for s in result.samples)
    assert result.segments >= result.recipients
    assert result.cost_usd == pytest.approx(result.segments * 0.0079)


def test_segment_filters_select_by_visits_services_spend_and_future_appointments(database):
    now = datetime.now(UTC)
    today = datetime.now(LA).date()
    with database.tenant_scope(GLOW) as session:

        def ids(**filters) -> set[int]:
            sql, params = segment_sql(SegmentFilter.from_dict(filters))
            return set(
                session.execute(
                    text(sql), {**params, "clinic_id": GLOW, "tz": "America/Los_Angeles", "now": now}
                ).scalars()
            )

        def client(phone: str) -> int:
            return int(session.execute(text("SELECT id FROM clients WHERE phone_e164 = :p"), {"p": phone}).scalar_one())

        olivia, isabella, sophia = client("+14155550141"), client("+14155550145"), client("+14155550144")
        lapsed = ids(last_visit_before=(today - timedelta(days=150)).isoformat())
        assert isabella in lapsed and olivia not in lapsed  # Isabella: one visit ~190 days ago
        assert olivia in ids(services_had=["neurotoxin"]) and sophia not in ids(services_had=["neurotoxin"])
        assert sophia in ids(min_spend_cents=90_000)  # four HydraFacials at $225
        assert isabella not in ids(min_spend_cents=90_000)
        assert olivia in ids(has_future_appointment=True) and olivia not in ids(has_future_appointment=False)
        assert ids(tags=["vip"], services_had=["hydrafacial"]) == {sophia}
        assert ids(last_visit_after=(today - timedelta(days=20)).isoformat()) <= ids()


# ------------------------------------------------------------------ fan-out and compliance
def test_compliance_is_decided_at_send_time_and_late_evening_waits_for_morning(database, owner_engine):
    clinic = make_clinic(owner_engine, cap=2)
    cid = clinic["id"]
    ava, _ = add_client(owner_engine, cid, "Ava Patel")
    mia, _ = add_client(owner_engine, cid, "Mia Johnson")  # opts out between scheduling and sending
    ny, _ = add_client(owner_engine, cid, "Noah York", tz="America/New_York")
    out, _ = add_client(owner_engine, cid, "Olga Out", consent="opted_out")
    unknown, _ = add_client(owner_engine, cid, "Una Known", consent="unknown", marketing="none")
    capped, capped_phone = add_client(owner_engine, cid, "Cap Stone")
    day = datetime.now(LA).date() + timedelta(days=1)
    sending_at = la(day, time(18, 30))  # 21:30 in New York
    with owner_engine.begin() as conn:  # two marketing texts this week already: the weekly cap of 2 is reached
        for n in range(2):
            conn.execute(
                text(
                    """INSERT INTO outbox (clinic_id, client_id, channel, kind, to_address, body, status, dedupe_key,
                                           sent_at, meta)
                       VALUES (:c, :client, 'sms', 'campaign', :to, 'earlier offer', 'sent', :key, :sent,
                               '{"marketing": true}'::jsonb)"""
                ),
                {
                    "c": cid,
                    "client": capped,
                    "to": capped_phone,
                    "key": f"earlier:{capped}:{n}",
                    "sent": sending_at - timedelta(days=n + 1),
                },
            )
    campaign_id = _new_campaign(database, cid, SegmentFilter())
    with database.tenant_scope(cid) as session:
        assert schedule_campaign(session, cid, campaign_id, sending_at, sending_at - timedelta(hours=1)) == "scheduled"
        assert start_due_campaigns(session, cid, sending_at - timedelta(minutes=1)) == []
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE clients SET consent_state = 'opted_out' WHERE id = :id"), {"id": mia})
    with database.tenant_scope(cid) as session:
        assert start_due_campaigns(session, cid, sending_at) == [campaign_id]

    dispatched: list[int] = []
    result = run_campaign(database, cid, campaign_id, dispatched.extend, clock=lambda: sending_at, slice_s=10)
    assert (result.status, result.queued, result.deferred, result.excluded) == ("sending", 1, 1, 4)
    assert not result.more  # only the New Yorker is left, and not before 08:00 New York time
    rows = _recipients(database, cid, campaign_id)
    assert rows[ava]["status"] == "queued"
    assert rows[ava]["body"] == "Hi Ava, spring offers at Test Spa! Reply STOP to opt out."  # first marketing text
    assert rows[mia]["exclusion_reason"] == "opted_out" and rows[mia]["body"] is None
    assert rows[out]["exclusion_reason"] == "opted_out"
    assert rows[unknown]["exclusion_reason"] == "no_consent"
    assert rows[capped]["exclusion_reason"] == "frequency_cap"
    morning_ny = datetime.combine(day + timedelta(days=1), time(8), tzinfo=ZoneInfo("America/New_York"))
    assert rows[ny]["status"] == "pending" and rows[ny]["send_after"] == morning_ny
    assert len(dispatched) == 1

    with database.tenant_scope(cid) as session:  # 07:59 New York: still waiting
        assert start_due_campaigns(session, cid, morning_ny - timedelta(minutes=1)) == []
        assert start_due_campaigns(session, cid, morning_ny) == [campaign_id]
    result = run_campaign(database, cid, campaign_id, dispatched.extend, clock=lambda: morning_ny, slice_s=10)
    assert (result.status, result.queued) == ("completed", 1)
    assert _recipients(database, cid, campaign_id)[ny]["body"].startswith("Hi Noah,")

    with database.tenant_scope(cid) as session:
        state = report(session, cid, campaign_id, morning_ny)
    assert state.recipients == 6 == sum(state.breakdown.values())
    assert state.breakdown["queued"] == 2 and state.breakdown["excluded"] == 4
    assert state.excluded == {
        "no_phone": 0,
        "invalid_number": 0,
        "opted_out": 2,
        "no_consent": 1,
        "frequency_cap": 1,
    }


def test_two_runners_at_once_send_each_recipient_once(database, owner_engine):
    clinic = make_clinic(owner_engine)
    cid = clinic["id"]
    clients = [add_client(owner_engine, cid, f"Client {n}")[0] for n in range(60)]
    campaign_id = _new_campaign(database, cid, SegmentFilter())
    noon = la(datetime.now(LA).date(), time(12))
    with database.tenant_scope(cid) as session:
        schedule_campaign(session, cid, campaign_id, noon, noon)
    dispatched: list[int] = []
    lock = threading.Lock()

    def dispatch(ids: list[int]) -> None:
        with lock:
            dispatched.extend(ids)

    barrier = threading.Barrier(2)

    def runner() -> None:
        barrier.wait()
        run_campaign(
            database, cid, campaign_id, dispatch, clock=lambda: noon, slice_s=10, batch_size=7, max_in_flight=10_000
        )

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(dispatched) == sorted(set(dispatched)) and len(dispatched) == len(clients)
    with database.tenant_scope(cid) as session:
        per_client = session.execute(
            text("SELECT count(*), count(DISTINCT client_id) FROM outbox WHERE campaign_id = :id"), {"id": campaign_id}
        ).one()
        assert tuple(per_client) == (60, 60)
        assert get_campaign(session, cid, campaign_id).status == "completed"


def test_cancel_withdraws_queued_messages_and_pending_recipients(database, owner_engine):
    clinic = make_clinic(owner_engine)
    cid = clinic["id"]
    for n in range(5):
        add_client(owner_engine, cid, f"C{n}")
    late, _ = add_client(owner_engine, cid, "Late Night", tz="Asia/Tokyo")
    campaign_id = _new_campaign(database, cid, SegmentFilter())
    moment = la(datetime.now(LA).date(), time(12))  # 04:00/05:00 in Tokyo: deferred
    with database.tenant_scope(cid) as session:
        schedule_campaign(session, cid, campaign_id, moment, moment)
    run_campaign(database, cid, campaign_id, lambda ids: None, clock=lambda: moment, slice_s=10)
    with database.tenant_scope(cid) as session:
        assert cancel_campaign(session, cid, campaign_id, moment) == 6
        with pytest.raises(CampaignError, match="already cancelled"):
            cancel_campaign(session, cid, campaign_id, moment)
        statuses = session.execute(
            text("SELECT status, count(*) FROM outbox WHERE campaign_id = :id GROUP BY status"), {"id": campaign_id}
        ).all()
        state = report(session, cid, campaign_id, moment)
    assert dict(statuses) == {"cancelled": 5}
    assert _recipients(database, cid, campaign_id)[late]["status"] == "cancelled"
    assert state.breakdown["cancelled"] == 6 == state.recipients


def test_the_report_counts_a_booking_given_back_as_not_booked(database, owner_engine):
    """``booked``: recipients who booked after the text and still hold the slot.  A booking cancelled, late-cancelled
    or left to expire unpaid is a slot given back (``RELEASED_STATUSES``), not a booking the campaign brought."""
    clinic = make_clinic(owner_engine)
    cid = clinic["id"]
    kept, late, cancelled, expired = (add_client(owner_engine, cid, name)[0] for name in ("Kay", "Lou", "Cal", "Ed"))
    campaign_id = _new_campaign(database, cid, SegmentFilter())
    noon = la(datetime.now(LA).date(), time(12))
    with database.tenant_scope(cid) as session:
        schedule_campaign(session, cid, campaign_id, noon, noon)
    run_campaign(database, cid, campaign_id, lambda ids: None, clock=lambda: noon, slice_s=10)
    with owner_engine.begin() as conn:  # what the sender records once the texts went out
        sent = conn.execute(
            text("UPDATE outbox SET status = 'sent', sent_at = :noon WHERE campaign_id = :id"),
            {"noon": noon, "id": campaign_id},
        )
        assert sent.rowcount == 4
        for n, (client_id, status) in enumerate(
            ((kept, "booked"), (late, "late_cancelled"), (cancelled, "cancelled"), (expired, "expired"))
        ):
            start = noon + timedelta(days=3, hours=n)
            conn.execute(
                text(
                    """INSERT INTO appointments (clinic_id, client_id, provider_id, starts_at, ends_at, blocked_until,
                                                 status, created_at)
                       VALUES (:c, :client, :p, :start, :start + interval '1 hour', :start + interval '1 hour',
                               :status, :booked_at)"""
                ),
                {
                    "c": cid,
                    "client": client_id,
                    "p": clinic["provider_id"],
                    "start": start,
                    "status": status,
                    "booked_at": noon + timedelta(hours=1),
                },
            )
    with database.tenant_scope(cid) as session:
        state = report(session, cid, campaign_id, noon + timedelta(hours=2))
    assert state.sent == 4
    assert state.booked == 1  # Kay; Lou's late cancellation gave the slot back like Cal's and Ed's


# ------------------------------------------------------------------ real sends: pause within a batch, report
@pytest.fixture(scope="module")
def sending_stack(infra, tmp_path_factory):
    with running_stack(infra, tmp_path_factory.mktemp("campaign-stack")) as (stack, container):
        yield stack, container


def test_pause_stops_sending_within_a_batch_and_the_report_adds_up(sending_stack, database, owner_engine):
    from worker.automation_actors import dispatcher

    stack, container = sending_stack
    clinic = make_clinic(owner_engine)
    cid = clinic["id"]
    phones = {}
    for n in range(40):
        client_id, phone = add_client(owner_engine, cid, f"Pat{n} Lee", tz="Asia/Tokyo" if n == 0 else None)
        phones[client_id] = phone
    cap = 8.0
    campaign_id = _new_campaign(database, cid, SegmentFilter(), cap=cap)
    noon = la(datetime.now(LA).date(), time(12))
    stack.clock.set(noon)
    with database.tenant_scope(cid) as session:
        schedule_campaign(session, cid, campaign_id, noon, noon)
    # One batch of 40 (cap 8/s → five seconds of sends), handed to one paced sender.
    runner = threading.Thread(
        target=run_campaign,
        args=(database, cid, campaign_id, dispatcher(cid, campaign_id, cap)),
        kwargs={"clock": stack.clock.now, "slice_s": 3, "batch_size": 40},
    )
    runner.start()

    def sent() -> list:
        return [m for m in list(stack.twilio.messages) if m.to in phones.values()]

    wait_for(lambda: len(sent()) >= 5, 20, what="the first campaign texts")
    with database.tenant_scope(cid) as session:
        withdrawn = pause_campaign(session, cid, campaign_id)
    runner.join(10)
    at_pause = len(sent())
    assert withdrawn > 0 and at_pause + withdrawn <= 40
    stack.wait_idle(cid)
    assert len(sent()) <= at_pause + 1  # at most the one a sender had already claimed
    paused_count = len(sent())
    assert paused_count < 39

    with database.tenant_scope(cid) as session:
        assert resume_campaign(session, cid, campaign_id, noon) == "sending"
    run_campaign(database, cid, campaign_id, dispatcher(cid, campaign_id, None), clock=stack.clock.now, slice_s=20)
    wait_for(lambda: len(sent()) >= 39, 20, what="the rest after resume")
    stack.wait_idle(cid)
    texts = sent()
    assert (
        len(texts) == 39 and len({m.to for m in texts}) == 39
    )  # each once; the Tokyo client waits for 08:00 Tokyo time
    assert all(m.from_ == clinic["number"] for m in texts)

    # Replies to a campaign flow into the normal conversation; STOP opts out.
    first, second = (phones[c] for c in list(phones)[1:3])
    stack.send_sms(clinic["number"], first, "STOP")
    stack.send_sms(clinic["number"], second, "Do you have anything Friday?")
    stack.wait_idle(cid)
    with database.tenant_scope(cid) as session:
        client_two = next(c for c, p in phones.items() if p == second)
        session.execute(
            text(
                """INSERT INTO appointments (clinic_id, client_id, provider_id, starts_at, ends_at, blocked_until,
                                             status)
                   VALUES (:c, :client, :provider, :start, :start + interval '1 hour', :start + interval '1 hour',
                           'booked')"""
            ),
            {"c": cid, "client": client_two, "provider": clinic["provider_id"], "start": noon + timedelta(days=3)},
        )
        state = report(session, cid, campaign_id, noon)
    assert state.recipients == 40 == sum(state.breakdown.values())
    assert state.sent == 39 and state.breakdown["deferred"] == 1
    assert state.opted_out == 1
    assert state.replied == 2
    assert state.booked == 1
    assert state.failed == 0


def test_a_chunk_claims_only_its_own_campaigns_rows(database, owner_engine):
    # The chunk reads its campaign's status beside the rows it locks, so a row of another campaign (or any other
    # kind) among its ids must not be claimed under that status: it would go out though its own campaign is paused.
    clinic = make_clinic(owner_engine)
    cid = clinic["id"]
    client, phone = add_client(owner_engine, cid, "Ava Patel")
    ours, theirs = _new_campaign(database, cid, SegmentFilter()), _new_campaign(database, cid, SegmentFilter())
    ids: dict[int, int] = {}
    with owner_engine.begin() as conn:
        for campaign_id in (ours, theirs):
            ids[campaign_id] = conn.execute(
                text(
                    """INSERT INTO outbox (clinic_id, client_id, campaign_id, channel, kind, to_address, body, status,
                                           dedupe_key)
                       VALUES (:c, :client, :k, 'sms', 'campaign', :to, 'offer', 'queued', :key) RETURNING id"""
                ),
                {"c": cid, "client": client, "k": campaign_id, "to": phone, "key": f"chunk:{campaign_id}"},
            ).scalar_one()
        conn.execute(text("UPDATE campaigns SET status = 'sending' WHERE id = :k"), {"k": ours})
        conn.execute(text("UPDATE campaigns SET status = 'paused' WHERE id = :k"), {"k": theirs})

    claimed = PostgresOutbox(database).claim_campaign_chunk(
        cid, ours, [ids[ours], ids[theirs]], Claim.start(), lambda row: Verdict(ClaimAction.CLAIM), datetime.now(UTC)
    )
    assert [row.id for row in claimed.rows] == [ids[ours]]
    with database.tenant_scope(cid) as session:
        statuses = dict(
            session.execute(
                text("SELECT campaign_id, status FROM outbox WHERE id = ANY(:i)"), {"i": list(ids.values())}
            ).all()
        )
    assert statuses == {ours: "sending", theirs: "queued"}


def test_the_first_marketing_text_that_goes_out_carries_the_opt_out_footer(database, owner_engine):
    # Campaign A queues Ava's first marketing text (with the footer); campaign B is planned while A's still waits.
    # A queued text is not one she got: A may yet be withdrawn (paused, cancelled) and B's text be the first she
    # reads, so B's carries the footer too.  Once a text has gone out, later ones go without it.
    clinic = make_clinic(owner_engine, cap=5)
    cid = clinic["id"]
    ava, _ = add_client(owner_engine, cid, "Ava Patel")
    moment = la(datetime.now(LA).date() + timedelta(days=1), time(12))
    bodies: dict[int, str] = {}
    for name in ("A", "B"):
        campaign_id = _new_campaign(database, cid, SegmentFilter(), template=f"Offer {name} at {{clinic_name}}")
        with database.tenant_scope(cid) as session:
            schedule_campaign(session, cid, campaign_id, moment, moment)
        run_campaign(database, cid, campaign_id, lambda ids: None, clock=lambda: moment, slice_s=10)
        bodies[campaign_id] = _recipients(database, cid, campaign_id)[ava]["body"]
    first, second = bodies  # A's row still queued when B was planned: either may be the one that goes out
    assert bodies[first].endswith("Reply STOP to opt out.") and bodies[second].endswith("Reply STOP to opt out.")

    with owner_engine.begin() as conn:  # B's text goes out; a third campaign's text needs no footer
        conn.execute(text("UPDATE outbox SET status = 'sent', sent_at = now() WHERE campaign_id = :k"), {"k": second})
    third = _new_campaign(database, cid, SegmentFilter(), template="Offer C at {clinic_name}")
    with database.tenant_scope(cid) as session:
        schedule_campaign(session, cid, third, moment, moment)
    run_campaign(database, cid, third, lambda ids: None, clock=lambda: moment, slice_s=10)
    assert _recipients(database, cid, third)[ava]["body"] == "Offer C at Test Spa"
