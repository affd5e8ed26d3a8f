"""Past-visit import rules (pure): columns, statuses, money, durations, and matching services and providers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.import_values import ImportFileError, Rejected, map_headers
from domain.visit_import import (
    VISIT_FIELDS,
    Named,
    Resolver,
    VisitRow,
    parse_amount,
    parse_duration,
    parse_name_overrides,
    parse_status,
    parse_status_overrides,
    parse_visit_row,
    visit_times,
)

TZ = "America/Los_Angeles"
NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
HEADERS = ["Appointment ID", "Client", "Client Phone", "Email", "Service", "Staff", "Date", "Time", "Duration",
           "Total", "Status"]  # fmt: skip


def visit(**cells: str) -> VisitRow | Rejected:
    values = dict.fromkeys(HEADERS, "") | {
        "Client": "Ava Patel",
        "Client Phone": "(415) 555-0142",
        "Service": "Botox",
        "Staff": "Dr. Maya Chen",
        "Date": "2026-06-15",
        "Time": "2:30 PM",
        "Status": "Completed",
    }
    values |= {k.replace("_", " "): v for k, v in cells.items()}
    mapping = map_headers(HEADERS, VISIT_FIELDS)
    return parse_visit_row(
        [values[h] for h in HEADERS], mapping, 2, region="US", tz=TZ, now=NOW, status_overrides=cells.get("overrides")
    )


def test_booking_system_headers_map_to_visit_fields() -> None:
    mapping = map_headers(HEADERS, VISIT_FIELDS)
    assert list(mapping.fields) == ["external_id", "name", "phone", "email", "service", "provider", "date", "time",
                                    "duration", "amount", "status"]  # fmt: skip
    other = map_headers(["Customer Name", "Mobile", "Treatment", "Practitioner", "Start", "Amount Paid"], VISIT_FIELDS)
    assert list(other.fields) == ["name", "phone", "service", "provider", "start", "amount"]


def test_a_row_is_a_past_visit_with_its_time_money_and_key() -> None:
    row = visit(Total="$1,234.50", Duration="1h 30m")
    assert isinstance(row, VisitRow)
    assert row.starts_at == datetime(2026, 6, 15, 21, 30, tzinfo=UTC)  # 14:30 in Los Angeles (PDT)
    assert (row.phone, row.status, row.amount_cents, row.duration_min) == ("+14155550142", "completed", 123450, 90)
    assert row.key.startswith("import:visit:") and row.key == visit(Total="$1,234.50", Duration="1h 30m").key
    assert visit(Appointment_ID="A-1001").key == "import:visit:id:A-1001"  # type: ignore[union-attr]
    no_time = visit(Time="")
    # No time: noon local (the date is what segments use).
    assert isinstance(no_time, VisitRow) and no_time.starts_at.astimezone(UTC).hour == 19


def test_rows_that_are_not_past_visits_say_why() -> None:
    assert visit(Date="2027-01-05") == Rejected(2, "in the future", "book it instead (medspa appointments book)")
    assert visit(Date="") == Rejected(2, "no date")
    assert isinstance(visit(Date="31/31/2026"), Rejected)
    assert visit(Client_Phone="", Email="") == Rejected(2, "no phone or email to find the client by")
    assert visit(Client_Phone="555-0142") == Rejected(2, "invalid phone", "no area code")
    undecided = visit(Status="Confirmed")
    assert isinstance(undecided, Rejected) and "does not say what happened" in undecided.detail
    mapped = visit(Status="Confirmed", overrides=parse_status_overrides(["confirmed=completed"]))  # type: ignore[arg-type]
    assert isinstance(mapped, VisitRow) and mapped.status == "completed"
    kept = visit(Total="(50.00)", Duration="forever")
    assert isinstance(kept, VisitRow) and kept.amount_cents is None and kept.duration_min is None
    assert kept.warnings == (
        "amount left out: negative amount (a refund?)",
        "duration unreadable (the service's length is used)",
    )


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("Completed", "completed"),
        ("checked-out", "completed"),
        ("No Show", "no_show"),
        ("no-show", "no_show"),
        ("Late Cancel", "cancelled"),
        ("Canceled by client", "cancelled"),
    ],  # fmt: skip
)
def test_statuses(raw: str, status: str) -> None:
    assert parse_status(raw, {}) == status


def test_status_and_name_overrides_are_checked() -> None:
    with pytest.raises(ImportFileError):
        parse_status_overrides(["confirmed=done"])
    with pytest.raises(ValueError, match="unknown status"):
        parse_status("Teleported", {})
    with pytest.raises(ImportFileError, match="NAME=SLUG"):
        parse_name_overrides(["Botox"], "--map-service")


@pytest.mark.parametrize(
    ("raw", "cents"),
    [
        ("$95", 9500),
        ("1,234.50", 123450),
        ("1.234,50", 123450),
        ("95,00", 9500),
        ("USD 120.5", 12050),
        ("", None),
        ("0", 0),
    ],  # fmt: skip
)
def test_amounts(raw: str, cents: int | None) -> None:
    assert parse_amount(raw) == cents


def test_bad_amounts_and_durations() -> None:
    for bad in ("-20", "(20)", "free", "$2,000,000"):
        with pytest.raises(ValueError):
            parse_amount(bad)
    assert [parse_duration(v) for v in ("60", "45 min", "1h", "1:15", "1.5 hours", "")] == [60, 45, 60, 75, 90, None]
    for bad in ("0", "soon", "30 hours"):
        with pytest.raises(ValueError):
            parse_duration(bad)


SERVICES = [
    Named(1, "neurotoxin", "Botox", "neurotoxin", ("botox", "tox"), 30),
    Named(2, "lip-filler", "Lip Filler", "dermal filler", (), 60),
    Named(3, "hydrafacial", "HydraFacial", "facial", (), 60),
]
PROVIDERS = [Named(10, "maya-chen", "Maya Chen"), Named(11, "jordan-lee", "Jordan A Lee"), Named(12, "mia-b", "Mia B")]


def test_services_resolve_exactly_then_fuzzily_and_overrides_win() -> None:
    services = Resolver(SERVICES, parse_name_overrides(["Gift Card=none", "Tox Touch-up=lip-filler"], "m"),
                        fuzzy=True, kind="service")  # fmt: skip
    assert services.resolve("neurotoxin") == (SERVICES[0], "exact")
    assert services.resolve("HYDRAFACIAL") == (SERVICES[2], "exact")
    assert services.resolve("Botox - 20 units") == (SERVICES[0], "fuzzy")
    assert services.resolve("Lip filler 1 syringe") == (SERVICES[1], "fuzzy")
    assert services.resolve("Tox touch-up") == (SERVICES[1], "mapped")
    assert services.resolve("Gift card") == (None, "mapped")
    assert services.resolve("") == (None, "blank")
    with pytest.raises(LookupError, match="unknown service"):
        services.resolve("Cryotherapy")
    with pytest.raises(ImportFileError, match="no service 'nope'"):
        Resolver(SERVICES, {"x": "nope"}, fuzzy=True, kind="service")


def test_providers_resolve_by_name_without_titles() -> None:
    providers = Resolver(PROVIDERS, {}, fuzzy=False, kind="provider")
    assert providers.resolve("Dr. Maya Chen")[0] == PROVIDERS[0]
    assert providers.resolve("maya-chen")[0] == PROVIDERS[0]
    assert providers.resolve("Jordan Lee, NP")[0] == PROVIDERS[1]
    assert providers.resolve("Maya")[0] == PROVIDERS[0]  # the only Maya
    assert providers.resolve("Mia")[0] == PROVIDERS[2]
    for unknown in ("Mia Chen", "Lena", ""):
        with pytest.raises(LookupError):
            providers.resolve(unknown)
    two_mayas = Resolver([*PROVIDERS, Named(13, "maya-ross", "Maya Ross")], {}, fuzzy=False, kind="provider")
    with pytest.raises(LookupError):
        two_mayas.resolve("Maya")  # which one: not guessed


def test_a_past_visit_holds_no_time_beyond_its_end() -> None:
    row = visit(Duration="")
    assert isinstance(row, VisitRow)
    end, blocked = visit_times(row, SERVICES[0])
    assert end - row.starts_at == timedelta(minutes=30) and blocked == end
    assert visit_times(row, None)[0] - row.starts_at == timedelta(minutes=60)
