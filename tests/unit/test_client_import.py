"""Client-list import rules (pure): header mapping, cell values, phone numbers, duplicates, consent provenance."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from domain.client_import import (
    CLIENT_FIELDS,
    ClientRow,
    ConsentClaim,
    ExistingClient,
    consent_records,
    dedupe,
    match_existing,
    parse_client_row,
    plan_client,
    shares_email,
)
from domain.compliance import ConsentError, ConsentKind, ConsentRecord, ConsentScope, ConsentSource
from domain.import_values import (
    IGNORE,
    ImportFileError,
    Rejected,
    clean_name,
    clean_tags,
    infer_day_first,
    map_headers,
    normalise_email,
    normalise_phone,
    parse_date,
    parse_moment,
    parse_overrides,
    parse_time,
    parse_yes_no,
)

TZ = "America/Los_Angeles"
NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
WORDING = "I agree to receive appointment reminders and offers by text from Glow MedSpa."
HEADERS = [
    "First Name",
    "Last Name",
    "Mobile Phone #",
    "Home Phone",
    "E-mail Address",
    "DOB",
    "Tags",
    "Notes",
    "SMS Consent",
    "Marketing Consent",
    "Consent Source",
    "Consent Date",
    "Consent Wording",
    "Client ID",
    "Favourite colour",
]


def row_of(**cells: str) -> list[str]:
    names = {
        "first": 0,
        "last": 1,
        "mobile": 2,
        "home": 3,
        "email": 4,
        "dob": 5,
        "tags": 6,
        "notes": 7,
        "sms": 8,
        "marketing": 9,
        "source": 10,
        "when": 11,
        "wording": 12,
    }
    out = [""] * len(HEADERS)
    for key, value in cells.items():
        out[names[key]] = value
    return out


def parse(cells: list[str], line: int = 2, **kw: object) -> ClientRow | Rejected:
    mapping = map_headers(HEADERS, CLIENT_FIELDS)
    return parse_client_row(cells, mapping, line, region="US", tz=TZ, now=NOW, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- header mapping
def test_headers_are_mapped_tolerantly_and_unknown_columns_ignored() -> None:
    mapping = map_headers(HEADERS, CLIENT_FIELDS)
    fields = dict(mapping.describe())
    assert fields["Mobile Phone #"] == fields["Home Phone"] == "phone"
    assert (fields["E-mail Address"], fields["DOB"], fields["SMS Consent"]) == ("email", "birth_date", "sms_consent")
    assert fields["Client ID"] == fields["Favourite colour"] == IGNORE
    # The mobile column is preferred wherever it stands; the home phone is a fallback.
    flipped = map_headers(["Home Phone", "Cell"], CLIENT_FIELDS)
    assert flipped.value(["+14155550100", "+14155550142"], "phone") == "+14155550142"
    assert flipped.value(["+14155550100", ""], "phone") == "+14155550100"


def test_other_spellings_and_a_second_column_for_the_same_field() -> None:
    mapping = map_headers(["Name", "Phone", "Email", "Email", "Birthday", "Comments", "Opt-in Date"], CLIENT_FIELDS)
    assert list(mapping.fields) == ["name", "phone", "email", IGNORE, "birth_date", "notes", "consent_date"]


def test_overrides_win_and_are_checked() -> None:
    overrides = parse_overrides(["Favourite colour=notes", "Home Phone=ignore"], CLIENT_FIELDS)
    mapping = map_headers(HEADERS, CLIENT_FIELDS, overrides)
    assert dict(mapping.describe())["Favourite colour"] == "notes"
    assert mapping.columns("phone") == [2]
    with pytest.raises(ImportFileError, match="unknown field 'colour'"):
        parse_overrides(["Favourite colour=colour"], CLIENT_FIELDS)
    with pytest.raises(ImportFileError, match="COLUMN=FIELD"):
        parse_overrides(["notes"], CLIENT_FIELDS)
    with pytest.raises(ImportFileError, match="no column"):
        map_headers(HEADERS, CLIENT_FIELDS, parse_overrides(["Nope=notes"], CLIENT_FIELDS))


# ---------------------------------------------------------------- cell values
@pytest.mark.parametrize(
    ("raw", "e164", "error", "not_mobile"),
    [
        ("(415) 555-0142", "+14155550142", None, False),
        ("415.555.0142", "+14155550142", None, False),
        ("+1 415 555 0142", "+14155550142", None, False),
        ("14155550142.0", "+14155550142", None, False),  # a spreadsheet number cell: every digit is there
        ("'+14155550142", "+14155550142", None, False),  # a spreadsheet's text marker
        ("+61 412 345 678", "+61412345678", None, False),
        ("+44 20 7946 0958", "+442079460958", None, True),  # a London landline
        ("800-555-0199", "+18005550199", None, True),  # toll free
        ("415-555-0142 x12", "+14155550142", None, True),  # an extension: a desk phone
        ("4.15555E+09", None, "digits lost in a spreadsheet (scientific notation)", False),
        ("555-0142", None, "no area code", False),
        ("12", None, "too short", False),
        ("+999 123 4567", None, "unknown country code", False),
        ("0207 946 0958", None, "too long", False),  # a UK number without +44, in a US clinic: not guessed
        ("1-800-FLOWERS", None, "letters in the number", False),
        ("", None, None, False),
    ],
)
def test_phone_numbers_are_normalised_or_refused_with_the_reason(
    raw: str, e164: str | None, error: str | None, not_mobile: bool
) -> None:
    check = normalise_phone(raw, "US")
    assert (check.e164, check.error, check.not_mobile) == (e164, error, not_mobile)


def test_region_decides_numbers_without_a_country_code() -> None:
    assert normalise_phone("07911 123456", "GB").e164 == "+447911123456"
    assert normalise_phone("07911 123456", "US").e164 is None


@pytest.mark.parametrize(
    ("raw", "day_first", "expected"),
    [
        ("2024-03-05", False, date(2024, 3, 5)),
        ("2024/03/05 14:00", False, date(2024, 3, 5)),
        ("3/5/2024", False, date(2024, 3, 5)),
        ("3/5/2024", True, date(2024, 5, 3)),
        ("05.03.24", False, date(2024, 3, 5)),  # dotted: day first
        ("03/05/85", False, date(1985, 3, 5)),
        ("Mar 5, 2024", False, date(2024, 3, 5)),
        ("5-Mar-2024", False, date(2024, 3, 5)),
        ("March 5 2024 10:30 AM", False, date(2024, 3, 5)),
    ],
)
def test_dates_in_the_usual_spellings(raw: str, day_first: bool, expected: date) -> None:
    assert parse_date(raw, day_first=day_first) == expected


def test_bad_dates_and_the_files_date_order() -> None:
    for bad in ("13/5/2024", "2024-02-30", "yesterday", ""):
        with pytest.raises(ValueError):
            parse_date(bad)
    assert infer_day_first(["01/02/2024", "13/05/2024"]) is True
    assert infer_day_first(["05/13/2024", ""]) is False
    assert infer_day_first(["01/02/2024"]) is None
    assert infer_day_first(["13/05/2024", "05/13/2024"]) is None  # a file that contradicts itself
    assert parse_time("2:30 pm") == time(14, 30) and parse_time("09:05") == time(9, 5) and parse_time("12am") == time(0)
    with pytest.raises(ValueError):
        parse_time("25:00")
    assert parse_moment("2024-03-05", TZ).utcoffset() is not None
    assert parse_moment("2024-03-05T10:00:00Z", TZ) == datetime(2024, 3, 5, 10, tzinfo=UTC)
    assert parse_moment("3/5/2024 2:15 PM", TZ).hour == 14


def test_small_values() -> None:
    assert [parse_yes_no(v) for v in ("Yes", "Y", "TRUE", "opted in", "✓", "No", "opted-out", "0", "", "maybe")] == [
        True,
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        None,
        None,
    ]
    assert normalise_email("  Jane.Doe@Example.COM ") == "jane.doe@example.com"
    assert normalise_email("") is None
    for bad in ("jane", "jane@", "a@b.com; c@d.com"):
        with pytest.raises(ValueError):
            normalise_email(bad)
    assert clean_name("", "", "Smith, Jane") == "Jane Smith"
    assert clean_name("", "", "Jane Smith, Jr.") == "Jane Smith, Jr."
    assert clean_name(" Jane ", " Doe ", "ignored") == "Jane Doe"
    assert clean_name("", "", "  ") is None
    assert clean_tags("VIP; Glow  Club|vip", "imported") == ("vip", "glow club", "imported")


# ---------------------------------------------------------------- one row
def test_a_row_becomes_a_client_with_its_facts() -> None:
    row = parse(
        row_of(
            first="Ava",
            last="Patel",
            mobile="(415) 555-0142",
            email="AVA@example.com",
            dob="7/14/1990",
            tags="VIP, Botox",
            notes="Prefers mornings",
        ),
        extra_tags=["imported"],
    )
    assert isinstance(row, ClientRow)
    assert (row.name, row.phone, row.email, row.birth_date) == (
        "Ava Patel",
        "+14155550142",
        "ava@example.com",
        date(1990, 7, 14),
    )
    assert row.tags == ("vip", "botox", "imported") and row.notes == "Prefers mornings" and row.consent == ()


def test_rows_that_cannot_be_imported_say_why() -> None:
    bad_phone = parse(row_of(first="A", mobile="555-0142", email="a@example.com"))
    assert bad_phone == Rejected(2, "invalid phone", "no area code")  # an email does not rescue a wrong number
    assert parse(row_of(first="B", email="not-an-email")) == Rejected(
        2, "no phone or email", "the email is not an address"
    )
    assert parse(row_of(first="B")) == Rejected(2, "no phone or email")
    kept = parse(row_of(first="C", mobile="4155550143", email="nope", dob="31/31/1990"))
    assert isinstance(kept, ClientRow) and kept.email is None and kept.birth_date is None
    assert kept.warnings == ("email is not an address (left out)", "date of birth unreadable or impossible (left out)")


def test_consent_claims_carry_their_provenance_or_what_is_missing() -> None:
    full = parse(
        row_of(
            mobile="4155550144",
            sms="yes",
            marketing="Y",
            source="Paper intake form",
            when="2024-05-01",
            wording=WORDING,
        )
    )
    assert isinstance(full, ClientRow)
    assert [(c.scope, c.agreed, c.missing) for c in full.consent] == [
        (ConsentScope.TRANSACTIONAL, True, ()),
        (ConsentScope.MARKETING, True, ()),
    ]
    assert full.consent[0].given_at == datetime(2024, 5, 1, 7, 0, tzinfo=UTC)  # midnight in the clinic's zone
    bare = parse(row_of(mobile="4155550145", marketing="yes", wording="Yes"))
    assert isinstance(bare, ClientRow)
    assert bare.consent[0].missing == ("source", "date", "wording (a sentence the patient agreed to, not a yes/no)")
    future = parse(row_of(mobile="4155550146", sms="yes", source="Web", when="2030-01-01", wording=WORDING))
    assert isinstance(future, ClientRow) and future.consent[0].missing == ("date (in the future)",)


# ---------------------------------------------------------------- duplicates
def client_row(line: int, phone: str | None, email: str | None = None, **kw: object) -> ClientRow:
    return ClientRow(line, kw.pop("name", None), phone, email, **kw)  # type: ignore[arg-type]


def test_duplicates_within_the_file_merge_into_the_first_row() -> None:
    rows = [
        client_row(2, "+14155550142", None, name="Ava", tags=("vip",)),
        client_row(3, "+14155550142", "ava@example.com", name="Ava Patel", tags=("botox",)),
        client_row(4, None, "bo@example.com", name="Bo"),
        client_row(5, "+14155550150", "bo@example.com"),  # Bo's number, found by the email
        client_row(6, "+14155550151", "family@example.com", name="Cy"),
        client_row(7, "+14155550152", "family@example.com", name="Di"),  # shared email, another number
    ]
    kept, duplicates = dedupe(rows)
    assert [(d.row, d.of_row) for d in duplicates] == [(3, 2), (5, 4)]
    assert [(r.row, r.name, r.phone, r.email, r.tags) for r in kept] == [
        (2, "Ava", "+14155550142", "ava@example.com", ("vip", "botox")),
        (4, "Bo", "+14155550150", "bo@example.com", ()),
        (6, "Cy", "+14155550151", "family@example.com", ()),
        (7, "Di", "+14155550152", "family@example.com", ()),
    ]


# ---------------------------------------------------------------- existing clients
def test_matching_existing_clients_by_phone_then_email() -> None:
    ava = ExistingClient(1, "+14155550142", email="ava@example.com")
    bo = ExistingClient(2, None, email="bo@example.com")
    twins = [ExistingClient(3, None, email="twins@example.com"), ExistingClient(4, None, email="twins@example.com")]
    by_phone = {"+14155550142": ava}
    by_email = {"ava@example.com": [ava], "bo@example.com": [bo], "twins@example.com": twins}
    assert match_existing(client_row(2, "+14155550142"), by_phone, by_email) is ava
    assert match_existing(client_row(3, "+14155550150", "bo@example.com"), by_phone, by_email) is bo
    assert match_existing(client_row(4, "+14155550151", "ava@example.com"), by_phone, by_email) is None
    assert shares_email(client_row(4, "+14155550151", "ava@example.com"), by_email) == [1]
    ambiguous = match_existing(client_row(5, None, "twins@example.com"), by_phone, by_email)
    assert ambiguous == Rejected(5, "email matches several clients", "#3, #4")


def test_an_existing_client_is_completed_never_overwritten() -> None:
    existing = ExistingClient(7, "+14155550142", name="Ava P.", tags=("vip",), notes="Prefers mornings")
    row = client_row(
        2, "+14155550142", "ava@example.com", name="Ava Patel", tags=("vip", "botox"), notes="Prefers mornings"
    )
    plan = plan_client(row, existing)
    assert (plan.action, plan.client_id) == ("update", 7)
    assert plan.changes == {"email": "ava@example.com", "tags": ["vip", "botox"]}  # the name stays theirs
    same = plan_client(client_row(2, "+14155550142", name="Someone", tags=("vip",)), existing)
    assert (same.action, same.changes, same.consent) == ("unchanged", {}, ())
    new = plan_client(client_row(3, "+18005550199", None, name="Desk", not_mobile=True), None)
    assert new.action == "new" and new.changes["sms_status"] == "not_mobile"


# ---------------------------------------------------------------- consent
def claim(scope: ConsentScope, agreed: bool | None, *, missing: tuple[str, ...] = (), at: datetime | None = None):
    given = at or datetime(2024, 5, 1, 7, tzinfo=UTC)
    return ConsentClaim(scope, agreed, "Paper intake form", given, WORDING, missing)


T, M = ConsentScope.TRANSACTIONAL, ConsentScope.MARKETING


def test_consent_with_provenance_is_recorded_as_an_imported_grant() -> None:
    records, notes = consent_records([claim(T, True), claim(M, True)], None)
    assert notes == ()
    assert [(r.kind, r.scope, r.source, r.given_via, r.wording) for r in records] == [
        (ConsentKind.OPT_IN, T, ConsentSource.IMPORT, "Paper intake form", WORDING),
        (ConsentKind.OPT_IN, M, ConsentSource.IMPORT, "Paper intake form", WORDING),
    ]
    assert records[1].client_changes() == {"marketing_consent": "granted"}


def test_without_provenance_nothing_is_recorded_and_nobody_becomes_campaign_eligible() -> None:
    records, notes = consent_records([claim(M, True, missing=("date",)), claim(T, True, missing=("source",))], None)
    assert records == ()
    assert notes == (
        "marketing: yes without provenance (date missing)",
        "texts: yes without provenance (source missing)",
    )
    # And the ledger's own rule refuses an imported grant without it, whoever builds one.
    with pytest.raises(ConsentError, match="missing: source, date"):
        ConsentRecord(ConsentKind.OPT_IN, M, ConsentSource.IMPORT, WORDING)


def test_an_import_never_widens_what_the_ledger_says() -> None:
    opted_out = ExistingClient(1, "+14155550142", consent_state="opted_out", marketing_consent="granted")
    records, notes = consent_records([claim(T, True), claim(M, True)], opted_out)
    assert records == () and all("never lifts an opt-out" in n for n in notes)
    withdrew = ExistingClient(2, "+14155550143", consent_state="opted_in", marketing_consent="revoked")
    assert consent_records([claim(M, True)], withdrew) == (
        (),
        ("marketing: withdrawn here; an import never re-grants it",),
    )
    stop_then_start = ExistingClient(
        3, "+14155550144", consent_state="opted_in", last_opt_out_at=datetime(2025, 1, 1, tzinfo=UTC)
    )
    records, notes = consent_records([claim(M, True, at=datetime(2024, 5, 1, tzinfo=UTC))], stop_then_start)
    assert records == () and notes == ("marketing: given before an opt-out recorded here (not recorded)",)


def test_a_no_is_honoured_without_provenance_unless_the_patient_opted_in_here_since() -> None:
    bare_no = ConsentClaim(T, False, missing=("source", "date", "wording"))
    records, _ = consent_records([bare_no, claim(M, True)], None)
    assert [(r.kind, r.scope) for r in records] == [(ConsentKind.OPT_OUT, ConsentScope.ALL)]  # and no marketing
    assert records[0].client_changes() == {"consent_state": "opted_out"}
    assert records[0].wording == "Opted out of texts (from the clinic's client list)"
    declined = consent_records([claim(M, False)], None)[0][0]
    assert declined.wording.endswith(f"; declined: {WORDING}") and declined.given_via == "Paper intake form"
    started = ExistingClient(
        4, "+14155550145", consent_state="opted_in", last_opt_in_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert consent_records([bare_no], started)[0] == ()
    newer_no = claim(T, False, at=datetime(2026, 6, 1, tzinfo=UTC))
    assert [r.kind for r in consent_records([newer_no], started)[0]] == [ConsentKind.OPT_OUT]


def test_what_is_already_so_is_not_recorded_again() -> None:
    first, _ = consent_records([claim(T, True), claim(M, True)], None)
    after = ExistingClient(5, "+14155550146", consent_state="opted_in", marketing_consent="granted")
    assert consent_records([claim(T, True), claim(M, True)], after) == ((), ())
    assert len(first) == 2
    revoked = ExistingClient(6, "+14155550147", marketing_consent="revoked")
    assert consent_records([claim(M, False)], revoked) == ((), ())
