"""Client-list import rules: which column is which, who is who, and what consent an import may record.  Plain
data in, plain data out (``scripts/client_import.py`` reads the file and writes through the existing homes;
cell values are read by ``domain.import_values``).

Decisions, and why:
- **Columns are mapped by header**, tolerantly ("Mobile Phone #", "Cell", "E-mail Address", "DOB"), never by
  position; staff see the mapping before anything is written and can override it (``--map "Col=field"``).
- **Phone numbers in E.164 or the row is rejected** with the reason (see ``domain.import_values``); a number
  known not to take texts is imported flagged ``not_mobile`` (nothing is texted to it).
- **Who is who**: the phone number is a client's identity for texting, so rows and clients are the same person
  when their numbers are equal; an email decides only where one side has no number (a shared family email with
  two different numbers is two clients).  Duplicates within the file merge into the first row (blanks filled,
  tags united); an existing client is never overwritten, only completed (a name, email, number or birth date it
  lacks, new tags, new notes).
- **Consent only with its provenance.**  A "yes" in a consent column is recorded only with where it was given
  (source), when (date) and what the patient agreed to (wording: a sentence, not "Y") — the evidence the TCPA
  asks for, kept in the ledger (``given_via``, ``given_at``, ``wording``; ``ConsentRecord`` refuses an imported
  opt-in without them).  Without provenance nothing is recorded: the client stands where any patient who gave
  the clinic their number stands — texts about their own visits (transactional), never marketing
  (``marketing_consent`` stays ``none``, so no campaign or marketing automation reaches them).
- **An import never widens what this clinic's own ledger says**: it does not lift an opt-out (only the number
  itself can, by texting START), does not re-grant marketing someone withdrew, and does not record a "yes" given
  before an opt-out recorded here.  A "no" is honoured without provenance (it can only mean fewer texts) unless
  the patient opted in here after it.  What is already so is not recorded again: re-importing the same file
  changes nothing and adds no ledger rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Protocol

from domain.compliance import ConsentKind, ConsentRecord, ConsentScope, ConsentSource
from domain.import_values import (
    ColumnMapping,
    Rejected,
    clean_name,
    clean_tags,
    normalise_email,
    normalise_phone,
    parse_date,
    parse_moment,
    parse_yes_no,
    spellings,
)

# field -> header spellings (normalised).  Where two fields could claim a header, the first listed wins.
CLIENT_FIELDS: dict[str, tuple[str, ...]] = {
    "first_name": spellings("first name|firstname|first|given name|fname|forename"),
    "last_name": spellings("last name|lastname|last|surname|family name|lname"),
    "name": spellings("name|full name|fullname|client|customer|patient|client name|display name"),
    # In order of preference when a file has several phone columns.
    "phone": spellings(
        "mobile|mobile phone|mobile number|cell|cell phone|cellphone|cell number|sms number|text number|phone|"
        "phone number|telephone|tel|primary phone|contact number|home phone|work phone"
    ),
    "email": spellings("email|e mail|email address|e mail address|mail"),
    "birth_date": spellings("date of birth|dob|birthday|birth date|birthdate|born"),
    "tags": spellings("tags|tag|labels|label|groups|client tags|categories"),
    "notes": spellings("notes|note|comments|comment|remarks|client notes|alerts"),
    "sms_consent": spellings(
        "sms consent|text consent|texting consent|sms opt in|text opt in|sms optin|accepts sms|sms|sms reminders|"
        "text reminders|transactional consent|sms transactional consent"
    ),
    "marketing_consent": spellings(
        "marketing consent|sms marketing consent|sms marketing|marketing sms|accepts sms marketing|marketing opt in|"
        "sms marketing opt in|text marketing|promotional texts|promotions"
    ),
    "consent_source": spellings("consent source|opt in source|consent method|consent channel|source of consent"),
    "consent_date": spellings(
        "consent date|opt in date|consent given|consent timestamp|date of consent|consented at|consent given at|"
        "opt in timestamp|consent date time"
    ),
    "consent_wording": spellings(
        "consent wording|consent text|consent language|opt in text|opt in wording|consent statement|consent disclosure"
    ),
    "marketing_consent_source": spellings("marketing consent source|marketing opt in source|sms marketing source"),
    "marketing_consent_date": spellings("marketing consent date|marketing opt in date|sms marketing date"),
    "marketing_consent_wording": spellings("marketing consent wording|marketing consent text|marketing opt in text"),
}
DATE_FIELDS = ("birth_date", "consent_date", "marketing_consent_date")
MIN_WORDING_WORDS = 4


# ---------------------------------------------------------------- one row
@dataclass(frozen=True)
class ConsentClaim:
    """What the file says about one scope of consent, and whether its provenance is complete."""

    scope: ConsentScope
    agreed: bool | None
    given_via: str = ""
    given_at: datetime | None = None
    wording: str = ""
    missing: tuple[str, ...] = ()  # provenance that is absent or unusable


@dataclass(frozen=True)
class ClientRow:
    row: int  # line in the file (the header is line 1)
    name: str | None
    phone: str | None
    email: str | None
    not_mobile: bool = False
    phone_kind: str = ""
    birth_date: date | None = None
    tags: tuple[str, ...] = ()
    notes: str = ""
    consent: tuple[ConsentClaim, ...] = ()
    warnings: tuple[str, ...] = ()
    merged_rows: tuple[int, ...] = ()


def _wording_problem(text: str) -> str | None:
    if not text:
        return "wording"
    if parse_yes_no(text) is not None or len(text.split()) < MIN_WORDING_WORDS:
        return "wording (a sentence the patient agreed to, not a yes/no)"
    return None


def _claim(
    scope: ConsentScope, answer: str, source: str, when: str, wording: str, tz: str, now: datetime, day_first: bool
) -> ConsentClaim:
    agreed = parse_yes_no(answer)
    missing: list[str] = []
    given_at: datetime | None = None
    if not source or parse_yes_no(source) is not None:
        missing.append("source")
    if not when:
        missing.append("date")
    else:
        try:
            given_at = parse_moment(when, tz, day_first=day_first)
        except ValueError:
            missing.append("date (unreadable)")
        else:
            if given_at > now:
                missing.append("date (in the future)")
                given_at = None
    if problem := _wording_problem(wording):
        missing.append(problem)
    return ConsentClaim(scope, agreed, source[:200], given_at, wording, tuple(missing))  # the wording, verbatim


def parse_client_row(
    cells: Sequence[str],
    mapping: ColumnMapping,
    line: int,
    *,
    region: str,
    tz: str,
    now: datetime,
    day_first: bool = False,
    extra_tags: Sequence[str] = (),
) -> ClientRow | Rejected:
    def get(name: str) -> str:
        return mapping.value(cells, name).lstrip("'") if name in mapping.mapped() else ""

    warnings: list[str] = []
    phone = normalise_phone(get("phone"), region)
    if phone.error:
        return Rejected(line, "invalid phone", phone.error)
    try:
        email = normalise_email(get("email"))
    except ValueError:
        email = None
        warnings.append("email is not an address (left out)")
    if phone.e164 is None and email is None:
        return Rejected(line, "no phone or email", "the email is not an address" if warnings else "")
    birth: date | None = None
    if raw_birth := get("birth_date"):
        try:
            birth = parse_date(raw_birth, day_first=day_first)
            if not date(1900, 1, 1) <= birth <= now.date():
                raise ValueError("out of range")
        except ValueError:
            birth = None
            warnings.append("date of birth unreadable or impossible (left out)")
    claims = []
    general = (get("consent_source"), get("consent_date"), get("consent_wording"))
    specific = (get("marketing_consent_source"), get("marketing_consent_date"), get("marketing_consent_wording"))
    for scope, answer, provenance in (
        (ConsentScope.TRANSACTIONAL, get("sms_consent"), general),
        (ConsentScope.MARKETING, get("marketing_consent"), specific if any(specific) else general),
    ):
        if answer:
            claims.append(_claim(scope, answer, *provenance, tz=tz, now=now, day_first=day_first))
    return ClientRow(
        row=line,
        name=clean_name(get("first_name"), get("last_name"), get("name")),
        phone=phone.e164,
        email=email,
        not_mobile=phone.not_mobile,
        phone_kind=phone.kind,
        birth_date=birth,
        tags=clean_tags(get("tags"), *extra_tags),
        notes=get("notes")[:4000],
        consent=tuple(claims),
        warnings=tuple(warnings),
    )


# ---------------------------------------------------------------- duplicates within the file
@dataclass(frozen=True)
class Duplicate:
    row: int
    of_row: int


def _merge(first: ClientRow, later: ClientRow) -> ClientRow:
    return replace(
        first,
        name=first.name or later.name,
        phone=first.phone or later.phone,
        not_mobile=first.not_mobile if first.phone else later.not_mobile,
        phone_kind=first.phone_kind if first.phone else later.phone_kind,
        email=first.email or later.email,
        birth_date=first.birth_date or later.birth_date,
        tags=clean_tags(",".join(first.tags), ",".join(later.tags)),
        notes=first.notes if later.notes in first.notes else f"{first.notes}\n{later.notes}".strip(),
        consent=first.consent or later.consent,
        merged_rows=(*first.merged_rows, later.row),
    )


def dedupe(rows: Sequence[ClientRow]) -> tuple[list[ClientRow], list[Duplicate]]:
    """One row per person: the same number, or the same email where one of the two rows has no number."""
    groups: list[ClientRow] = []
    by_phone: dict[str, int] = {}
    by_email: dict[str, int] = {}
    duplicates: list[Duplicate] = []
    for row in rows:
        index: int | None = None
        if row.phone and row.phone in by_phone:
            index = by_phone[row.phone]
        elif row.email and row.email in by_email and (not row.phone or not groups[by_email[row.email]].phone):
            index = by_email[row.email]
        if index is None:
            groups.append(row)
            index = len(groups) - 1
        else:
            duplicates.append(Duplicate(row.row, groups[index].row))
            groups[index] = _merge(groups[index], row)
        merged = groups[index]
        if merged.phone:
            by_phone.setdefault(merged.phone, index)
        if merged.email:
            by_email.setdefault(merged.email, index)
    return groups, duplicates


# ---------------------------------------------------------------- against existing clients
@dataclass(frozen=True)
class ExistingClient:
    id: int
    phone: str | None
    name: str | None = None
    email: str | None = None
    birth_date: date | None = None
    tags: tuple[str, ...] = ()
    notes: str = ""
    consent_state: str = "unknown"
    marketing_consent: str = "none"
    last_opt_in_at: datetime | None = None  # the ledger's latest opt-in / opt-out for this client (any scope)
    last_opt_out_at: datetime | None = None


@dataclass(frozen=True)
class ClientPlan:
    row: ClientRow
    action: str  # new | update | unchanged
    client_id: int | None = None
    changes: dict[str, object] = field(default_factory=dict)
    consent: tuple[ConsentRecord, ...] = ()
    consent_notes: tuple[str, ...] = ()  # why a claim was not recorded (counted in the report)
    warnings: tuple[str, ...] = ()


class RowKeys(Protocol):
    """What matching reads of an imported row (a client row, a visit row)."""

    @property
    def row(self) -> int: ...

    @property
    def phone(self) -> str | None: ...

    @property
    def email(self) -> str | None: ...


def match_existing(
    row: RowKeys, by_phone: Mapping[str, ExistingClient], by_email: Mapping[str, Sequence[ExistingClient]]
) -> ExistingClient | Rejected | None:
    """The existing client a row is: same number; else same email where the row or that client has no number.
    The one matching rule of every import (the client list, visit history)."""
    if row.phone and row.phone in by_phone:
        return by_phone[row.phone]
    candidates = [c for c in by_email.get(row.email or "", ()) if not row.phone or not c.phone]
    if len(candidates) > 1:
        return Rejected(row.row, "email matches several clients", ", ".join(f"#{c.id}" for c in candidates))
    return candidates[0] if candidates else None


_DEFAULT_OPT_OUT_WORDING = {
    ConsentScope.TRANSACTIONAL: "Opted out of texts (from the clinic's client list)",
    ConsentScope.MARKETING: "Opted out of marketing texts (from the clinic's client list)",
}


def consent_records(
    claims: Sequence[ConsentClaim], existing: ExistingClient | None
) -> tuple[tuple[ConsentRecord, ...], tuple[str, ...]]:
    """The ledger records an import may make for one client, and why each other claim is not recorded."""
    state = {
        "consent_state": existing.consent_state if existing else "unknown",
        "marketing_consent": existing.marketing_consent if existing else "none",
    }
    last_in = existing.last_opt_in_at if existing else None
    last_out = existing.last_opt_out_at if existing else None
    records: list[ConsentRecord] = []
    notes: list[str] = []
    # Opt-outs first: a row saying "no texts" and "yes to offers" means no texts.
    for claim in sorted(claims, key=lambda c: c.agreed is not False):
        label = "texts" if claim.scope is ConsentScope.TRANSACTIONAL else "marketing"
        if claim.agreed is None:
            notes.append(f"{label}: consent cell not understood (nothing recorded)")
            continue
        if claim.agreed is False:
            wording = _DEFAULT_OPT_OUT_WORDING[claim.scope]
            if claim.wording:  # what they were asked and said no to
                wording += f"; declined: {claim.wording}"
            record = ConsentRecord(
                ConsentKind.OPT_OUT,
                ConsentScope.ALL if claim.scope is ConsentScope.TRANSACTIONAL else ConsentScope.MARKETING,
                ConsentSource.IMPORT,
                wording,
                claim.given_at,
                claim.given_via,
            )
            if all(state.get(k) == v for k, v in record.client_changes().items()):
                continue  # already so
            if last_in is not None and (claim.given_at is None or claim.given_at < last_in):
                notes.append(f"{label}: opt-out older than an opt-in recorded here (not recorded)")
                continue
        else:
            if claim.missing:
                notes.append(f"{label}: yes without provenance ({', '.join(claim.missing)} missing)")
                continue
            if state["consent_state"] == "opted_out":
                notes.append(f"{label}: opted out here; an import never lifts an opt-out")
                continue
            if claim.scope is ConsentScope.MARKETING and state["marketing_consent"] == "revoked":
                notes.append("marketing: withdrawn here; an import never re-grants it")
                continue
            if last_out is not None and claim.given_at is not None and claim.given_at <= last_out:
                notes.append(f"{label}: given before an opt-out recorded here (not recorded)")
                continue
            record = ConsentRecord(
                ConsentKind.OPT_IN, claim.scope, ConsentSource.IMPORT, claim.wording, claim.given_at, claim.given_via
            )
            if all(state.get(k) == v for k, v in record.client_changes().items()):
                continue  # already so
        records.append(record)
        state.update(record.client_changes())
    return tuple(records), tuple(notes)


def shares_email(row: ClientRow, by_email: Mapping[str, Sequence[ExistingClient]]) -> list[int]:
    """Existing clients with the row's email and another number (the row is a different person to us)."""
    return [c.id for c in by_email.get(row.email or "", ()) if c.phone and row.phone and c.phone != row.phone]


def plan_client(
    row: ClientRow, existing: ExistingClient | None, *, shared_email_with: Sequence[int] = ()
) -> ClientPlan:
    """What importing ``row`` does: create the client, complete an existing one, or nothing."""
    consent, notes = consent_records(row.consent, existing)
    if shared_email_with:
        row = replace(row, warnings=(*row.warnings, "email shared with a client with another number"))
    if existing is None:
        changes: dict[str, object] = {
            "name": row.name,
            "phone_e164": row.phone,
            "email": row.email,
            "birth_date": row.birth_date,
            "tags": list(row.tags),
            "notes": row.notes,
            "sms_status": "not_mobile" if row.not_mobile else "ok",
        }
        return ClientPlan(row, "new", None, changes, consent, notes, row.warnings)
    changes = {}
    if row.name and not existing.name:
        changes["name"] = row.name
    if row.email and not existing.email:
        changes["email"] = row.email
    if row.phone and not existing.phone:
        changes["phone_e164"] = row.phone
        changes["sms_status"] = "not_mobile" if row.not_mobile else "ok"
    if row.birth_date and not existing.birth_date:
        changes["birth_date"] = row.birth_date
    if not set(row.tags) <= set(existing.tags):
        changes["tags"] = list(clean_tags(",".join(existing.tags), ",".join(row.tags)))
    if row.notes and row.notes not in existing.notes:
        changes["notes"] = f"{existing.notes}\n{row.notes}".strip()
    warnings = row.warnings
    if row.phone and existing.phone and row.phone != existing.phone:
        warnings = (*warnings, "number differs from the client's (kept theirs)")
    action = "update" if changes or consent else "unchanged"
    return ClientPlan(row, action, existing.id, changes, consent, notes, warnings)
