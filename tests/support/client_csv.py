"""A messy client-list CSV, the way clinics' exports really look, with what a correct import must make of it.

5,000 data rows: a UTF-8 BOM, CRLF line endings, lines written by Excel on Windows (Windows-1252), blank and
comma-only lines, quoted notes with commas and line breaks, an extra column and rows with stray cells beyond
the header, phone numbers in every spelling, invalid numbers, toll-free numbers, email-only clients, a home
phone where the mobile is blank, duplicates within the file, rows for existing clients, and consent with and
without its provenance.  Every row's expected fate is known by construction (``Expected``).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import phonenumbers

HEADER = [
    "First Name", "Last Name", "Mobile Phone", "Home Phone", "Email", "Date of Birth", "Tags", "Notes",
    "SMS Consent", "Marketing Consent", "Consent Source", "Consent Date", "Consent Wording", "Loyalty Points",
]  # fmt: skip
WORDING = "I agree to receive appointment reminders and occasional offers by text from Willow Skin Studio."
INVALID_PHONES = ["555-0142", "4.15234E+09", "+999 123 4567", "(415) 234-567", "12", "1-800-FLOWERS", "+1 123 456 7890"]
FORMATS = [
    "({a}) {b}-{c}", "{a}.{b}.{c}", "+1 {a} {b} {c}", "{a}{b}{c}", "1-{a}-{b}-{c}", "1{a}{b}{c}.0", " {a}-{b}-{c} ",
    "+1 ({a}) {b}-{c}",
]  # fmt: skip
CP1252_NAMES = [("José", "Müller"), ("Zoë", "Brontë"), ("Renée", "Façade"), ("Chloé", "Dupré"), ("Inés", "Peña")]


@dataclass
class Existing:
    phone: str | None
    name: str
    email: str | None = None
    consent_state: str = "unknown"


@dataclass
class Expected:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_lines: dict[int, str] = field(default_factory=dict)  # line -> reason
    duplicate_lines: set[int] = field(default_factory=set)
    marketing_granted: set[str] = field(default_factory=set)  # phones
    no_provenance: set[str] = field(default_factory=set)  # phones whose "yes" lacks provenance
    transactional_opt_in: set[str] = field(default_factory=set)
    opted_out: set[str] = field(default_factory=set)
    marketing_revoked: set[str] = field(default_factory=set)
    stopped: set[str] = field(default_factory=set)  # existing clients who opted out here
    not_mobile: set[str] = field(default_factory=set)
    email_only: set[str] = field(default_factory=set)
    home_phone_used: set[str] = field(default_factory=set)
    cp1252_names: dict[str, str] = field(default_factory=dict)  # phone -> name
    existing: list[Existing] = field(default_factory=list)


class _Numbers:
    def __init__(self, rng: random.Random) -> None:
        self.rng, self.used = rng, set[str]()

    def mobile(self) -> tuple[str, str, str]:
        while True:
            a = self.rng.choice(["415", "510", "628", "650", "707", "916", "971", "360"])
            b = str(self.rng.randint(200, 999))
            c = f"{self.rng.randint(0, 9999):04d}"
            if b[1:] == "11" or b == "555" or a + b + c in self.used:
                continue
            if phonenumbers.is_valid_number(phonenumbers.parse(f"+1{a}{b}{c}")):
                self.used.add(a + b + c)
                return a, b, c

    def toll_free(self) -> tuple[str, str, str]:
        while True:
            a, b, c = (
                self.rng.choice(["800", "888", "877"]),
                str(self.rng.randint(200, 999)),
                f"{self.rng.randint(0, 9999):04d}",
            )
            if a + b + c not in self.used:
                self.used.add(a + b + c)
                return a, b, c


def e164(parts: tuple[str, str, str]) -> str:
    return "+1" + "".join(parts)


def build(rows: int = 5000, seed: int = 16) -> tuple[bytes, Expected]:
    rng = random.Random(seed)
    numbers = _Numbers(rng)
    exp = Expected()
    records: list[tuple[list[str], str]] = []  # (cells, encoding)

    def spelled(parts: tuple[str, str, str]) -> str:
        return rng.choice(FORMATS).format(a=parts[0], b=parts[1], c=parts[2])

    def person(i: int) -> tuple[str, str]:
        return f"Client{i}", rng.choice(["Smith", "Nguyen", "Garcia", "Okafor", "Kowalski", "Núñez"])

    def row(first: str, last: str, mobile: str = "", **cells: str) -> list[str]:
        out = dict.fromkeys(HEADER, "") | {"First Name": first, "Last Name": last, "Mobile Phone": mobile}
        out |= {k.replace("_", " "): v for k, v in cells.items()}
        return [out[h] for h in HEADER]

    def consent_date() -> str:
        month, day = rng.randint(1, 12), rng.randint(1, 28)
        return rng.choice([f"2024-{month:02d}-{day:02d}", f"{month}/{day}/2024", f"{month}/{day}/2024 10:15 AM"])

    new_phones: list[tuple[str, str, str]] = []
    i = 0
    # Existing clients: completed by the file (40), untouched (20), opted out here (10), found by email (5).
    for kind, count in (("complete", 40), ("same", 20), ("stopped", 10), ("by_email", 5)):
        for _ in range(count):
            i += 1
            parts = numbers.mobile()
            first, last = person(i)
            if kind == "by_email":
                email = f"client{i}@example.com"
                exp.existing.append(Existing(None, f"{first} {last}", email))
                records.append((row(first, last, spelled(parts), Email=email.upper()), "utf-8"))
                exp.updated += 1
                continue
            state = "opted_out" if kind == "stopped" else "unknown"
            exp.existing.append(Existing(e164(parts), f"{first} {last}", None, state))
            if kind == "complete":
                records.append((row(first, last, spelled(parts), Email=f"client{i}@example.com", Tags="VIP"), "utf-8"))
                exp.updated += 1
            elif kind == "same":
                records.append((row("Someone", "Else", spelled(parts)), "utf-8"))
                exp.unchanged += 1
            else:
                records.append(
                    (
                        row(
                            first,
                            last,
                            spelled(parts),
                            SMS_Consent="Yes",
                            Marketing_Consent="Yes",
                            Consent_Source="Paper intake form",
                            Consent_Date=consent_date(),
                            Consent_Wording=WORDING,
                        ),
                        "utf-8",
                    )  # fmt: skip
                )
                exp.stopped.add(e164(parts))
                exp.unchanged += 1
    groups = [("full", 600), ("no_date", 300), ("short_wording", 200), ("texts_only", 300), ("marketing_no", 100),
              ("texts_no", 100), ("toll_free", 30), ("email_only", 50), ("home_phone", 20), ("cp1252", 25)]  # fmt: skip
    plain = rows - 75 - sum(n for _, n in groups) - 150 - 250 - 60
    groups.append(("plain", plain))
    for kind, count in groups:
        for _ in range(count):
            i += 1
            first, last = person(i)
            if kind == "email_only":
                email = f"only{i}@example.com"
                records.append((row(first, last, "", Email=email), "utf-8"))
                exp.email_only.add(email)
                exp.new += 1
                continue
            parts = numbers.toll_free() if kind == "toll_free" else numbers.mobile()
            phone = e164(parts)
            cells: dict[str, str] = {
                "Date_of_Birth": f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/19{rng.randint(50, 99)}"
            }
            provenance = {"Consent_Source": "Online booking form", "Consent_Date": consent_date(),
                          "Consent_Wording": WORDING}  # fmt: skip
            encoding = "utf-8"
            if kind == "full":
                cells |= {"SMS_Consent": "yes", "Marketing_Consent": rng.choice(["Yes", "Y", "TRUE", "opted in"])}
                cells |= provenance
                exp.marketing_granted.add(phone)
                exp.transactional_opt_in.add(phone)
            elif kind == "no_date":
                cells |= {"Marketing_Consent": "Yes"} | provenance | {"Consent_Date": ""}
                exp.no_provenance.add(phone)
            elif kind == "short_wording":
                cells |= {"Marketing_Consent": "Yes"} | provenance | {"Consent_Wording": "Y"}
                exp.no_provenance.add(phone)
            elif kind == "texts_only":
                cells |= {"SMS_Consent": "Yes"} | provenance
                exp.transactional_opt_in.add(phone)
            elif kind == "marketing_no":
                cells |= {"Marketing_Consent": "No"}
                exp.marketing_revoked.add(phone)
            elif kind == "texts_no":
                cells |= {"SMS_Consent": "opted out"}
                exp.opted_out.add(phone)
            elif kind == "toll_free":
                exp.not_mobile.add(phone)
            elif kind == "cp1252":
                first, last = CP1252_NAMES[i % len(CP1252_NAMES)]
                first = f"{first}{i}"
                cells |= {"Notes": "Client’s “favourite” spot: left cheek"}
                exp.cp1252_names[phone] = f"{first} {last}"
                encoding = "cp1252"
            elif kind == "plain" and rng.random() < 0.05:
                cells |= {"Notes": "Allergic to lidocaine, latex\nPrefers Hana", "Tags": "sensitive; vip"}
            if kind == "home_phone":
                records.append((row(first, last, "", Home_Phone=spelled(parts), **cells), encoding))
                exp.home_phone_used.add(phone)
            else:
                records.append((row(first, last, spelled(parts), **cells), encoding))
            new_phones.append(parts)
            exp.new += 1
    # Duplicates within the file: an earlier new client's number, spelled differently (one adds an email).
    for j, index in enumerate(rng.sample(range(len(new_phones)), 150)):
        records.append((row("Dup", str(j), spelled(new_phones[index]), Email=f"dup{j}@example.com"), "utf-8"))
    # Rows that cannot be imported.
    for j in range(250):
        records.append((row("Bad", str(j), INVALID_PHONES[j % len(INVALID_PHONES)]), "utf-8"))
    for j in range(60):
        records.append((row("Nobody", str(j), "", Email="" if j % 2 else "nobody at example"), "utf-8"))
    return _write(records, rng, exp)


def _quote(cell: str) -> str:
    if any(ch in cell for ch in ',"\n\r') or cell != cell.strip():
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _write(records: list[tuple[list[str], str]], rng: random.Random, exp: Expected) -> tuple[bytes, Expected]:
    """Shuffle (keeping each duplicate after the row it repeats), add blank lines and stray cells, encode."""
    head, tail = records[: len(records) - 460], records[len(records) - 460 :]
    rng.shuffle(head)
    rng.shuffle(tail)
    ordered = head + tail
    out = [b"\xef\xbb\xbf" + ",".join(HEADER).encode() + b"\r\n"]
    line = 2
    for index, (cells, encoding) in enumerate(ordered):
        if index % 997 == 500:
            out.append(b"\r\n")
            line += 1
        if index % 1201 == 700:
            out.append(b",,,,,,,,,,,,,\r\n")
            line += 1
        text_cells = [_quote(c) for c in cells]
        if index % 613 == 3:
            text_cells += ["stray", "cells"]
        out.append(",".join(text_cells).encode(encoding) + b"\r\n")
        first = cells[0]
        if first == "Bad":
            exp.rejected["invalid phone"] += 1
            exp.rejected_lines[line] = "invalid phone"
        elif first == "Nobody":
            exp.rejected["no phone or email"] += 1
            exp.rejected_lines[line] = "no phone or email"
        elif first == "Dup":
            exp.duplicates += 1
            exp.duplicate_lines.add(line)
        line += 1 + sum(c.count("\n") for c in cells)
    return b"".join(out), exp
