"""``medspa campaign …``: staff campaigns from the command line.

    medspa campaign create --clinic glow-medspa --name "Spring tox" \\
        --template "Hi {first_name}, {clinic_name} has openings {next_open_slot}. Reply to book!" \\
        --service neurotoxin --last-visit-before 2026-01-01 --no-future-appointment
    medspa campaign preview 7          # counts, exclusions by reason, three samples, segments and cost
    medspa campaign send 7             # now; shows progress on stderr until every recipient is handled
    medspa campaign schedule 7 --at "2026-03-02 10:00"   # clinic-local time unless an offset is given
    medspa campaign pause|resume|cancel 7
    medspa campaign report 7 --json
    medspa campaign list

Sending happens in the workers (``medspa worker``); scheduled campaigns start
when the scheduler's campaign tick finds them due.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from scripts.common import CommandError


def register(subparsers: Any) -> None:
    campaign = subparsers.add_parser("campaign", help="create, preview, send and report staff SMS campaigns")
    sub = campaign.add_subparsers(dest="campaign_command", metavar="SUBCOMMAND", required=True)

    def command(name: str, help_text: str, handler: Any, *, with_id: bool = True, json_flag: bool = False) -> Any:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--clinic", required=True, help="clinic slug (see: medspa clinic list)")
        if with_id:
            parser.add_argument("campaign_id", type=int, help="campaign id (see: medspa campaign list)")
        if json_flag:
            parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.set_defaults(handler=handler)
        return parser

    create = command(
        "create",
        "create a draft campaign from a template and segment filters",
        create_cmd,
        with_id=False,
        json_flag=True,
    )
    create.add_argument("--name", required=True)
    body = create.add_mutually_exclusive_group(required=True)
    body.add_argument(
        "--template",
        help="message text with {first_name} {clinic_name} {clinic_phone} {next_open_slot} {last_service} {review_url}",
    )
    body.add_argument("--template-file", type=argparse.FileType("r"), help="read the template from a file")
    create.add_argument("--last-visit-before", help="last completed visit before this date (YYYY-MM-DD)")
    create.add_argument("--last-visit-after", help="last completed visit on/after this date (YYYY-MM-DD)")
    create.add_argument("--service", action="append", default=[], help="had this service (slug; repeatable)")
    create.add_argument("--tag", action="append", default=[], help="carries this tag (repeatable; any matches)")
    future = create.add_mutually_exclusive_group()
    future.add_argument("--has-future-appointment", dest="future", action="store_const", const=True)
    future.add_argument("--no-future-appointment", dest="future", action="store_const", const=False)
    create.add_argument(
        "--min-spend", type=float, help="completed visits' amounts charged (else list price) add up to at least $N"
    )
    create.add_argument("--rate-cap", type=float, help="at most N messages per second for this campaign")
    create.add_argument("--created-by", default="", help="who is sending (kept on the campaign)")

    command("preview", "who would get it now, what they'd read, and what it costs", preview_cmd, json_flag=True)
    send = command("send", "start sending now", send_cmd, json_flag=True)
    send.add_argument("--no-wait", action="store_true", help="return at once instead of showing progress")
    send.add_argument("--timeout", type=float, default=3600, help="stop waiting after this many seconds")
    schedule = command("schedule", "send at a later time", schedule_cmd, json_flag=True)
    schedule.add_argument("--at", required=True, help="ISO date-time; clinic-local unless it has an offset")
    command("pause", "stop sending (what is still queued is withdrawn)", pause_cmd, json_flag=True)
    command("resume", "continue a paused campaign", resume_cmd, json_flag=True)
    command("cancel", "stop for good", cancel_cmd, json_flag=True)
    command("report", "sent, delivered, failed, opted out, replied, booked afterwards", report_cmd, json_flag=True)
    command("list", "campaigns of a clinic", list_cmd, with_id=False, json_flag=True)


# ------------------------------------------------------------------ plumbing
def _now() -> datetime:
    return datetime.now(UTC)


def _scope(clinic_slug: str) -> tuple[int, Any]:
    from scripts.common import app_database, clinic_id_for

    clinic_id = clinic_id_for(clinic_slug)
    return clinic_id, app_database()


def _run(fn: Any) -> Any:
    """Turn the domain's user-facing errors into one-line CLI errors."""
    from domain.audience import SegmentError
    from domain.templates import TemplateError
    from worker.campaigns.lifecycle import CampaignError

    try:
        return fn()
    except (CampaignError, SegmentError, TemplateError) as exc:
        raise CommandError(str(exc)) from None


def _enqueue_runner(clinic_id: int, campaign_id: int) -> None:
    from medspa.broker import BULK_QUEUE, message_for
    from scripts.common import enqueue_by_name

    enqueue_by_name([message_for("run_campaign_slice", BULK_QUEUE, clinic_id, campaign_id)])


def _emit(args: argparse.Namespace, value: dict[str, Any], line: str) -> None:
    from scripts.common import print_json

    if getattr(args, "json", False):
        print_json(value)
    else:
        print(line)


# ------------------------------------------------------------------ commands
def create_cmd(args: argparse.Namespace) -> int:
    from domain.audience import SegmentFilter
    from worker.campaigns.lifecycle import create_campaign

    template = args.template if args.template is not None else args.template_file.read()
    segment = _run(
        lambda: SegmentFilter.from_dict(
            {
                "last_visit_before": args.last_visit_before,
                "last_visit_after": args.last_visit_after,
                "services_had": args.service,
                "tags": args.tag,
                "has_future_appointment": args.future,
                "min_spend_cents": round(args.min_spend * 100) if args.min_spend is not None else None,
            }
        )
    )
    clinic_id, database = _scope(args.clinic)
    with database.tenant_scope(clinic_id) as session:
        campaign_id = _run(
            lambda: create_campaign(
                session,
                clinic_id,
                name=args.name,
                template=template.strip(),
                segment=segment,
                created_by=args.created_by,
                rate_cap_per_s=args.rate_cap,
            )
        )
    _emit(
        args,
        {"id": campaign_id, "status": "draft", "segment": segment.to_dict()},
        f"campaign {campaign_id} created (draft): {segment.describe()}. Next: medspa campaign preview "
        f"--clinic {args.clinic} {campaign_id}",
    )
    return 0


def preview_cmd(args: argparse.Namespace) -> int:
    from worker.campaigns.lifecycle import get_campaign
    from worker.campaigns.segments import preview

    clinic_id, database = _scope(args.clinic)
    with database.tenant_scope(clinic_id) as session:
        campaign = _run(lambda: get_campaign(session, clinic_id, args.campaign_id))
        result = _run(
            lambda: preview(session, clinic_id, campaign.template, campaign.segment, _now(), campaign_id=campaign.id)
        )
    data = {"id": campaign.id, "name": campaign.name, "status": campaign.status, **result.as_dict()}
    if args.json:
        _emit(args, data, "")
        return 0
    print(f'Campaign {campaign.id} "{campaign.name}" ({campaign.status}) - segment: {result.segment}')
    print(f"  matched clients:  {result.matched}")
    print(
        f"  recipients:       {result.recipients}"
        + (f" ({result.deferred} deferred to 08:00 local)" if result.deferred else "")
    )
    for reason, count in result.excluded.items():
        if count:
            print(f"  excluded {reason + ':':<16}{count}")
    print(
        f"  SMS segments:     {result.segments}  (about ${result.cost_usd:,.2f} at ${data['cost_per_segment_usd']}"
        "/segment)"
    )
    for index, sample in enumerate(result.samples, 1):
        print(f"  sample {index}: {sample}")
    return 0


def schedule_cmd(args: argparse.Namespace) -> int:
    from sqlalchemy import text

    from worker.campaigns.lifecycle import clinic_instant, schedule_campaign

    clinic_id, database = _scope(args.clinic)
    with database.tenant_scope(clinic_id) as session:
        tz = session.execute(text("SELECT timezone FROM clinics WHERE id = :id"), {"id": clinic_id}).scalar_one()
        try:
            at = clinic_instant(session, clinic_id, datetime.fromisoformat(args.at))
        except ValueError:
            raise CommandError(f"--at must be an ISO date-time like 2026-03-02T10:00, got {args.at!r}") from None
        status = _run(lambda: schedule_campaign(session, clinic_id, args.campaign_id, at, _now()))
    if status == "sending":
        _enqueue_runner(clinic_id, args.campaign_id)
    _emit(
        args,
        {"id": args.campaign_id, "status": status, "scheduled_at": at.isoformat()},
        f"campaign {args.campaign_id} {status} (at {at.astimezone(ZoneInfo(tz)):%Y-%m-%d %H:%M %Z})",
    )
    return 0


def send_cmd(args: argparse.Namespace) -> int:
    from worker.campaigns.lifecycle import schedule_campaign
    from worker.campaigns.report import report

    clinic_id, database = _scope(args.clinic)
    now = _now()
    with database.tenant_scope(clinic_id) as session:
        _run(lambda: schedule_campaign(session, clinic_id, args.campaign_id, now, now))
    _enqueue_runner(clinic_id, args.campaign_id)
    if args.no_wait:
        _emit(args, {"id": args.campaign_id, "status": "sending"}, f"campaign {args.campaign_id} sending")
        return 0
    bar = ProgressBar(sys.stderr)
    deadline = time.monotonic() + args.timeout
    while True:
        with database.tenant_scope(clinic_id) as session:
            state = report(session, clinic_id, args.campaign_id, _now())
        b = state.breakdown
        handled = state.recipients - b["pending"] - b["queued"]
        bar.update(
            handled,
            state.recipients,
            f"sent {state.sent} failed {state.failed} excluded {b['excluded']} deferred {b['deferred']}",
        )
        started = state.status != "sending" or state.recipients > 0
        # Done when nothing is waiting to be decided or sent (recipients deferred to their morning are the
        # scheduler's), or when staff paused/cancelled it elsewhere.
        if (started and b["pending"] == 0 and b["queued"] == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    bar.close()
    _emit(
        args,
        state.as_dict(),
        f"campaign {args.campaign_id} {state.status}: {state.recipients} recipients, "
        f"{state.sent} sent, {state.failed} failed, {b['excluded']} excluded, "
        f"{b['deferred']} deferred to 08:00 local",
    )
    return 0


def pause_cmd(args: argparse.Namespace) -> int:
    from worker.campaigns.lifecycle import pause_campaign

    clinic_id, database = _scope(args.clinic)
    with database.tenant_scope(clinic_id) as session:
        withdrawn = _run(lambda: pause_campaign(session, clinic_id, args.campaign_id))
    _emit(
        args,
        {"id": args.campaign_id, "status": "paused", "withdrawn": withdrawn},
        f"campaign {args.campaign_id} paused; {withdrawn} queued message(s) withdrawn until resume",
    )
    return 0


def resume_cmd(args: argparse.Namespace) -> int:
    from worker.campaigns.lifecycle import resume_campaign

    clinic_id, database = _scope(args.clinic)
    with database.tenant_scope(clinic_id) as session:
        status = _run(lambda: resume_campaign(session, clinic_id, args.campaign_id, _now()))
    if status == "sending":
        _enqueue_runner(clinic_id, args.campaign_id)
    _emit(args, {"id": args.campaign_id, "status": status}, f"campaign {args.campaign_id} {status}")
    return 0


def cancel_cmd(args: argparse.Namespace) -> int:
    from worker.campaigns.lifecycle import cancel_campaign

    clinic_id, database = _scope(args.clinic)
    with database.tenant_scope(clinic_id) as session:
        dropped = _run(lambda: cancel_campaign(session, clinic_id, args.campaign_id, _now()))
    _emit(
        args,
        {"id": args.campaign_id, "status": "cancelled", "not_sent": dropped},
        f"campaign {args.campaign_id} cancelled; {dropped} recipient(s) will get nothing",
    )
    return 0


def report_cmd(args: argparse.Namespace) -> int:
    from worker.campaigns.report import report

    clinic_id, database = _scope(args.clinic)
    with database.tenant_scope(clinic_id) as session:
        result = _run(lambda: report(session, clinic_id, args.campaign_id, _now()))
    state = result.as_dict()
    if args.json:
        _emit(args, state, "")
        return 0
    print(f'Campaign {result.campaign_id} "{result.name}" ({result.status}): {result.recipients} recipients')
    for key in ("sent", "delivered", "failed", "opted_out", "replied", "booked"):
        print(f"  {key + ':':<12}{state[key]}")
    print("  breakdown:  " + ", ".join(f"{k} {v}" for k, v in result.breakdown.items() if v))
    excluded = {k: v for k, v in result.excluded.items() if v}
    if excluded:
        print("  excluded:   " + ", ".join(f"{k} {v}" for k, v in excluded.items()))
    print(f"  segments:   {result.segments_sent} (${result.cost_usd:,.2f})")
    return 0


def list_cmd(args: argparse.Namespace) -> int:
    from scripts.common import print_json, print_table
    from worker.campaigns.lifecycle import list_campaigns

    clinic_id, database = _scope(args.clinic)
    with database.tenant_scope(clinic_id) as session:
        rows = [campaign.as_dict() for campaign in list_campaigns(session, clinic_id)]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["id", "name", "status", "recipients", "scheduled_at", "completed_at"])
    return 0


class ProgressBar:
    """A one-line progress bar on stderr (a line per 10 % when stderr is not a terminal)."""

    def __init__(self, stream: Any, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_decile = -1
        self._line = ""
        self._printed = ""

    def update(self, done: int, total: int, note: str = "") -> None:
        fraction = done / total if total else 0.0
        filled = int(self.width * fraction)
        self._line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {note}"
        if self.tty:
            self.stream.write("\r" + self._line.ljust(100))
        elif int(fraction * 10) != self._last_decile:
            self._last_decile = int(fraction * 10)
            self._printed = self._line
            self.stream.write(self._line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
        elif self._line and self._line != self._printed:
            self.stream.write(self._line + "\n")  # the final state, always
        self.stream.flush()
