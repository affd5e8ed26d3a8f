"""Plumbing the import commands share (``medspa clients import``, ``medspa appointments import-visits``): reading
a CSV whatever spreadsheet wrote it, the progress bar, the rejects file, the report.

Reading: a UTF-8 (or UTF-8 with BOM, or UTF-16 with BOM) file is read as such; a line that is not UTF-8 is read
as Windows-1252 (what Excel on Windows writes), and the report says how many lines were; ``--encoding`` forces
one.  The delimiter is the header line's most frequent of , ; TAB |.  Blank lines are skipped, cells beyond the
header ignored, both counted.  Rows are numbered by the line they start on (the header is line 1), as a
spreadsheet shows them.

PHI (names, numbers, emails) goes to the terminal that asked and to the rejects file staff named, nowhere else:
nothing here logs.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import io
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import phonenumbers

from domain.import_values import ColumnMapping, ImportFileError, infer_day_first, map_headers, parse_overrides
from scripts.common import CommandError

DEFAULT_BATCH = 500
_DELIMITERS = (",", ";", "\t", "|")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class CsvFile:
    path: str
    headers: list[str]
    rows: list[tuple[int, list[str]]]  # (line the row starts on, cells)
    encoding: str
    fallback_lines: int = 0  # lines read as Windows-1252
    blank_lines: int = 0
    long_rows: int = 0  # rows with more cells than the header (the extra cells are ignored)
    delimiter: str = ","

    def summary(self) -> str:
        notes = [f"{len(self.rows):,} rows", f"encoding {self.encoding}"]
        if self.fallback_lines:
            notes.append(f"{self.fallback_lines:,} line(s) not UTF-8, read as Windows-1252")
        if self.delimiter != ",":
            notes.append(f"delimiter {'TAB' if self.delimiter == chr(9) else self.delimiter}")
        if self.blank_lines:
            notes.append(f"{self.blank_lines:,} blank line(s) skipped")
        if self.long_rows:
            notes.append(f"{self.long_rows:,} row(s) with more cells than the header (extra cells ignored)")
        return f"{self.path}: " + "; ".join(notes)


def _decode(raw: bytes, encoding: str | None) -> tuple[str, str, int]:
    """(text, encoding description, lines read as Windows-1252)."""
    if encoding:
        try:
            return raw.decode(encoding), encoding, 0
        except LookupError:
            raise CommandError(f"unknown --encoding {encoding!r}") from None
        except UnicodeDecodeError as exc:
            raise CommandError(f"the file is not {encoding} (byte {exc.start}); try another --encoding") from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16"), "UTF-16", 0
    label = "UTF-8"
    if raw.startswith(codecs.BOM_UTF8):
        raw, label = raw[len(codecs.BOM_UTF8) :], "UTF-8 (with BOM)"
    try:
        return raw.decode("utf-8"), label, 0
    except UnicodeDecodeError:
        pass
    lines, fallback = [], 0
    for line in raw.split(b"\n"):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            fallback += 1
            lines.append(line.decode("cp1252", errors="replace"))
    return "\n".join(lines), f"{label}, partly Windows-1252", fallback


def read_csv(path: str, encoding: str | None = None) -> CsvFile:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise CommandError(f"no such file: {path}") from None
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    text, described, fallback = _decode(raw, encoding)
    text = text.replace("\x00", "")
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not first:
        raise CommandError(f"{path} is empty")
    delimiter = max(_DELIMITERS, key=first.count) if any(d in first for d in _DELIMITERS) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    headers: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    blank = long_rows = 0
    previous = 0
    try:
        for cells in reader:
            start, previous = previous + 1, reader.line_num
            if not any(c.strip() for c in cells):
                blank += headers is not None
                continue
            if headers is None:
                headers = [c.replace("\ufeff", "").strip() for c in cells]
                continue
            if len(cells) > len(headers) and any(c.strip() for c in cells[len(headers) :]):
                long_rows += 1
            rows.append((start, cells[: len(headers)]))
    except csv.Error as exc:
        raise CommandError(f"{path} line {reader.line_num}: not readable as CSV ({exc})") from None
    assert headers is not None
    return CsvFile(path, headers, rows, described, fallback, blank, long_rows, delimiter)


def clinic_region(clinic_phone: str, given: str | None) -> str:
    """Where numbers written without +country are: ``--default-region``, else the clinic's own number's."""
    if given:
        region = given.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise CommandError(f"unknown --default-region {given!r} (an ISO country code such as US, CA, GB)")
        return region
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(clinic_phone)) or "US"
    except phonenumbers.NumberParseException:
        return "US"


def date_order(args: argparse.Namespace, csv_file: CsvFile, mapping: ColumnMapping, fields: Sequence[str]) -> bool:
    """Whether dates are day-first: as staff said, else as the file's dates show; prints which and why."""
    if args.day_first or args.month_first:
        day_first, why = bool(args.day_first), "as asked"
    else:
        values = (cells[i] for _, cells in csv_file.rows for f in fields for i in mapping.columns(f) if i < len(cells))
        inferred = infer_day_first(values)
        day_first, why = bool(inferred), "seen in the file" if inferred is not None else "the default"
    print(f"Dates read {'day-first (3/5/2024 = 3 May)' if day_first else 'month-first (3/5/2024 = March 5)'}: {why}")
    return day_first


def add_reading_options(parser: argparse.ArgumentParser, known_fields: Iterable[str]) -> None:
    parser.add_argument("file", metavar="FILE", help="the CSV file (any spreadsheet's export)")
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar='"COLUMN=FIELD"',
        help=f"read a column as a field (or 'ignore'); fields: {', '.join(known_fields)}",
    )
    parser.add_argument("--encoding", metavar="NAME", help="the file's encoding (default: UTF-8, else Windows-1252)")
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--day-first", action="store_true", help="dates like 3/5/2024 are 3 May")
    order.add_argument("--month-first", action="store_true", help="dates like 3/5/2024 are March 5")
    parser.add_argument(
        "--default-region",
        metavar="CC",
        help="country of numbers written without +country code (default: the clinic's own number's, e.g. US)",
    )
    parser.add_argument(
        "--apply", action="store_true", help="write the changes (default: a dry run that writes nothing)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"rows per transaction with --apply (default {DEFAULT_BATCH}; safe to interrupt and re-run)",
    )
    parser.add_argument("--rejects", metavar="OUT.csv", help="write every row not imported, with its reason, here")
    parser.add_argument("--progress", action="store_true", help="show progress on stderr even when not a terminal")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def mapping_or_error(build: Any) -> ColumnMapping:
    try:
        result: ColumnMapping = build()
    except ImportFileError as exc:
        raise CommandError(str(exc)) from None
    return result


def print_mapping(mapping: ColumnMapping) -> None:
    print("Columns:")
    width = max((len(header) for header, _ in mapping.describe()), default=0)
    for header, name in mapping.describe():
        print(f"  {header.ljust(width)}  -> {name if name != 'ignore' else '(ignored)'}")


class Progress:
    """A dependency-free progress bar on stderr (only on a terminal, or when asked)."""

    def __init__(self, total: int, label: str, enabled: bool, stream: TextIO | None = None) -> None:
        self.total, self.label, self.enabled = max(total, 1), label, enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self._shown = -1

    @classmethod
    def for_args(cls, total: int, label: str, args: argparse.Namespace) -> Progress:
        return cls(total, label, bool(args.progress or sys.stderr.isatty()))

    def advance(self, count: int) -> None:
        self.done = min(self.total, self.done + count)
        percent = self.done * 100 // self.total
        if self.enabled and percent != self._shown:
            self._shown = percent
            bar = "#" * (percent * 30 // 100)
            self.stream.write(f"\r{self.label} [{bar:<30}] {percent:3d}% {self.done:,}/{self.total:,} rows")
            self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self._shown >= 0:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class Outcome:
    """What an import did (or would do): counts for the report and rows for the rejects file."""

    actions: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)  # consent decisions, matches
    warnings: Counter[str] = field(default_factory=Counter)
    not_imported: list[tuple[int, str, str]] = field(default_factory=list)  # (line, status, reason)
    sample: list[str] = field(default_factory=list)

    def reject(self, line: int, reason: str, text: str) -> None:
        self.rejected[reason] += 1
        self.not_imported.append((line, "rejected", text))

    def duplicate(self, line: int, of_line: int) -> None:
        self.actions["duplicate"] += 1
        self.not_imported.append((line, "duplicate", f"same as row {of_line} (merged into it)"))


def write_rejects(path: str, csv_file: CsvFile, outcome: Outcome) -> int:
    """The rows not imported, as they were, with ``row``, ``status`` and ``reason`` first.  PHI: created readable
    by its owner only."""
    by_line = dict(csv_file.rows)
    rows = sorted(outcome.not_imported)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["row", "status", "reason", *csv_file.headers])
            for line, status, reason in rows:
                writer.writerow([line, status, reason, *by_line.get(line, [])])
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    return len(rows)


def print_counts(title: str, counts: Counter[str], indent: str = "    ", *, total: bool = True) -> None:
    if counts:
        print(f"  {title}: {sum(counts.values()):,}" if total else f"  {title}:")
        for key, count in counts.most_common():
            print(f"{indent}{key}: {count:,}")


def safe_cell(value: Any) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (CSV injection); a leading ' marks it, and
    the import strips it again.  Phone numbers (+1…) stay as they are."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not (text.startswith("+") and text[1:].isdigit()):
        return "'" + text
    return text


# ---------------------------------------------------------------------------------------------- one import's steps
@dataclass
class ImportFile:
    """The clinic an import is for, its phone region, the file and how its columns map."""

    clinic: Any  # ``scripts.appointments.clinic_facts``
    region: str
    source: CsvFile
    mapping: ColumnMapping


def open_import(args: argparse.Namespace, fields: Mapping[str, Sequence[str]]) -> ImportFile:
    """Check the options, find the clinic and read the file (the reading options of ``add_reading_options``)."""
    from scripts.appointments import clinic_facts

    if args.batch_size < 1:
        raise CommandError("--batch-size must be at least 1")
    clinic = clinic_facts(args.clinic)
    region = clinic_region(clinic.phone, args.default_region)
    source = read_csv(args.file, args.encoding)
    mapping = mapping_or_error(lambda: map_headers(source.headers, fields, parse_overrides(args.map, fields)))
    return ImportFile(clinic, region, source, mapping)


def describe_file(
    args: argparse.Namespace, opened: ImportFile, date_fields: Sequence[str], required: Sequence[tuple[set[str], str]]
) -> bool:
    """Print the file's summary and column mapping (to stderr with --json, where stdout is the report), fail on a
    missing column (``required``: one of these fields, else this error), and return the file's date order."""
    stdout, sys.stdout = sys.stdout, (sys.stderr if args.json else sys.stdout)
    try:
        print(opened.source.summary())
        print_mapping(opened.mapping)
        for fields, error in required:
            if not opened.mapping.mapped() & fields:
                raise CommandError(error)
        return date_order(args, opened.source, opened.mapping, date_fields)
    finally:
        sys.stdout = stdout


@contextmanager
def committed_batches(progress: Progress, outcome: Outcome, noun: str) -> Iterator[None]:
    """Around an import's batches (one transaction each): on Ctrl-C, say how far the committed ones got."""
    try:
        yield
    except BaseException as exc:
        if not _interrupted(exc):
            raise
        progress.finish()
        done = sum(outcome.actions[a] for a in ("new", "update", "unchanged"))
        print(f"interrupted: {done:,} {noun}(s) done in committed batches; run the same command again to continue")
        if isinstance(exc, KeyboardInterrupt):
            raise
        # Ctrl-C landed while a statement ran: the driver's connection still waits for that statement, so rolling
        # the batch back failed on it and that error replaced the interrupt.  The server rolls the batch back
        # when the connection closes; what the user did was interrupt.
        raise KeyboardInterrupt from exc
    progress.finish()


def _interrupted(exc: BaseException | None) -> bool:
    """``exc`` is Ctrl-C, or an error raised while handling one."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__context__
    return False


def report_counts(source: CsvFile, outcome: Outcome, args: argparse.Namespace) -> dict[str, Any]:
    """The counts every import reports (``--json`` prints them, with the import's own)."""
    return {
        "rows": len(source.rows),
        "new": outcome.actions["new"],
        "updated": outcome.actions["update"],
        "unchanged": outcome.actions["unchanged"],
        "duplicates": outcome.actions["duplicate"],
        "rejected": sum(outcome.rejected.values()),
        "rejected_by_reason": dict(outcome.rejected),
        "warnings": dict(outcome.warnings),
        "applied": bool(args.apply),
    }


def print_rejected_rows(outcome: Outcome, rejects_path: str | None, rejects_written: int, limit: int = 10) -> None:
    """The first rejected rows and their reasons, and where the rows not imported were written."""
    shown = [r for r in sorted(outcome.not_imported) if r[1] == "rejected"][:limit]
    if shown:
        first = f" (the first {limit})" if len(shown) < sum(outcome.rejected.values()) else ""
        print(f"Rejected rows{first}:")
        for line, _, reason in shown:
            print(f"  row {line}: {reason}")
    if rejects_path:
        print(f"wrote {rejects_written:,} row(s) not imported to {rejects_path}")
