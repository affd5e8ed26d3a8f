"""No PHI in logs, even in errors: the one scrubbing filter (medspa/logs.py) and where it is installed.  The
real processes' error paths are covered by tests/e2e/test_observability.py."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from medspa.logs import PHI_SCRUBBER, JsonFormatter, configure_logging, scrub

PHONE = "+14155550777"


@pytest.mark.parametrize(
    "text",
    [
        PHONE,
        "14155550777",
        "4155550777",
        "(415) 555-0777",
        "415-555-0777",
        "415.555.0777",
        "1-415-555-0777",
        "+1 415 555 0777",
        "+44 20 7946 0958",
        "020 7946 0958",
        "07700 900123",
        "%2B14155550777",
    ],
)
def test_phone_numbers_in_e164_and_national_formats_are_scrubbed(text: str):
    scrubbed = scrub(f"call {text}, please")
    assert scrubbed == "call [phone], please"


def test_emails_bodies_and_database_values_are_scrubbed():
    assert scrub("from zeb.q+spa@mail.example.co.uk ok") == "from [email] ok"
    detail = (
        'duplicate key value violates unique constraint "clients_clinic_id_phone_e164_key"\n'
        "DETAIL:  Key (clinic_id, phone_e164)=(1, +14155550777) already exists.\n"
        "[SQL: INSERT INTO clients (clinic_id, phone_e164) VALUES (%(c)s, %(p)s)]\n"
        "[parameters: {'c': 1, 'p': 'Zebulon'}]"
    )
    assert scrub(detail) == (
        'duplicate key value violates unique constraint "clients_clinic_id_phone_e164_key"\n'
        "DETAIL:  Key (clinic_id, phone_e164)=([redacted]) already exists.\n"
        "[SQL: INSERT INTO clients (clinic_id, phone_e164) VALUES (%(c)s, %(p)s)]\n"
        "[parameters: [redacted]]"
    )
    row = scrub("DETAIL:  Failing row contains (7, 1, Zebulon Quartermaine, null).")
    assert "Zebulon" not in row and row.startswith("DETAIL:")
    assert "Zebulon" not in scrub("Failing row contains (7, Zebulon (Zeb) Quartermaine).")
    assert "pineapple" not in scrub("CONTEXT:  unnamed portal parameter $1 = 'pineapple horizon'")
    for carrier in (
        "{'Body': 'pineapple horizon', 'NumMedia': '0'}",
        '{"body": "pineapple \\"horizon\\""}',
        "1 validation error\n  input_value='pineapple horizon', input_type=str",
        "Body=pineapple+horizon&From=%2B14155550777",
        "content='pineapple horizon'",
    ):
        assert "pineapple" not in scrub(carrier), carrier


def test_ids_times_and_urls_are_left_alone():
    text = (
        "trace 9f1c2d3e4155550777aa at 2026-12-02T02:54:26.914Z epoch 1733100866 ms 1733100866123 took 12.5 ms "
        "message 550e8400-e29b-41d4-a716-446655440000 handle_inbound_event(1, 5) redis://127.0.0.1:6379/0 "
        "outbox_id=41555 sid=SM0123456789abcdef0123456789abcdef"
    )
    assert scrub(text) == text


@pytest.fixture()
def logging_state() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook, threading.excepthook)
    yield
    root.handlers[:], _, sys.excepthook, threading.excepthook = saved[0], None, saved[2], saved[3]
    root.setLevel(saved[1])


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_every_logger_is_scrubbed_dramatiqs_and_uvicorns_included(logging_state, capsys):
    # uvicorn configures its own, non-propagating loggers before it calls our app factory.
    uvicorn_output = io.StringIO()
    uvicorn_handler = logging.StreamHandler(uvicorn_output)
    uvicorn_handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    uvicorn_logger = logging.getLogger("uvicorn.error.test_scrub")
    uvicorn_logger.addHandler(uvicorn_handler)
    uvicorn_logger.propagate = False
    try:
        configure_logging("INFO", json_output=True)
        assert PHI_SCRUBBER in uvicorn_handler.filters
        error = ValueError(f"DETAIL:  Key (phone_e164)=({PHONE}) already exists; body='pineapple horizon'")
        try:
            raise error
        except ValueError:
            # What Dramatiq's worker thread logs for an actor's unhandled exception.
            logging.getLogger("dramatiq.worker.WorkerThread").error(
                "Failed to process message %s with unhandled exception.", f"send({PHONE})", exc_info=True
            )
            uvicorn_logger.error("Exception in ASGI application", exc_info=True)
        logging.getLogger("medspa.test").warning("client %s", "zeb@example.com", extra={"error": error})
    finally:
        uvicorn_logger.removeHandler(uvicorn_handler)
    root_output = capsys.readouterr().err
    for output in (root_output, uvicorn_output.getvalue()):
        assert "Key (phone_e164)=([redacted])" in output
        assert PHONE not in output and "4155550777" not in output
        assert "pineapple" not in output and "zeb@example.com" not in output
    records = _json_lines(root_output)
    assert records[0]["logger"] == "dramatiq.worker.WorkerThread"
    assert records[0]["exc_type"] == "ValueError" and "Traceback" in records[0]["exc"]
    assert records[0]["msg"] == "Failed to process message send([phone]) with unhandled exception."
    assert records[1]["msg"] == "client [email]" and "[redacted]" in records[1]["error"]


def test_an_uncaught_exception_in_a_thread_is_logged_scrubbed(logging_state, capsys):
    configure_logging("INFO", json_output=True)

    def crash() -> None:
        raise RuntimeError(f"could not text {PHONE}")

    thread = threading.Thread(target=crash, name="crasher")
    thread.start()
    thread.join()
    output = capsys.readouterr().err
    assert PHONE not in output
    (record,) = _json_lines(output)
    assert record["level"] == "CRITICAL" and record["exc_type"] == "RuntimeError"
    assert "could not text [phone]" in record["exc"] and record["thread_name"] == "crasher"


def test_json_formatter_without_the_filter_still_formats_exceptions():
    try:
        raise KeyError("x")
    except KeyError:
        record = logging.getLogger("plain").makeRecord("plain", logging.ERROR, __file__, 1, "m", (), sys.exc_info())
    payload = json.loads(JsonFormatter().format(record))
    assert payload["exc_type"] == "KeyError" and "Traceback" in payload["exc"]


def test_every_engine_hides_bound_parameters():
    """SQLAlchemy puts bound parameters (names, phone numbers, bodies) into error text unless told not to."""
    from medspa.settings import REPO_ROOT

    calls = []
    for path in REPO_ROOT.glob("**/*.py"):
        relative = path.relative_to(REPO_ROOT)
        if relative.parts[0] in {"tests", ".venv"}:
            continue
        source = path.read_text()
        for chunk in source.split("create_engine(")[1:]:
            calls.append((str(relative), chunk.split("\n)")[0].split(")\n")[0]))
    assert {path for path, _ in calls} >= {"db/engine.py", "alembic/env.py"}
    for path, arguments in calls:
        assert "hide_parameters=True" in arguments, path
