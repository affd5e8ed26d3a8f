"""What the console hands to the workers, end to end with a real Dramatiq worker: an article saved in the console
is embedded by the worker's embedder (the OpenAI SDK against the local fake), through ``embed_kb_document`` —
the console itself never loads a model; a campaign an owner sends from the console reaches its recipients (the
fake Twilio) and its report counts them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from domain.staff_access import StaffRole
from tests.support.console import GLOW, add_patient, running_console
from tests.support.infra import wait_for
from tests.support.stack import running_stack


def test_an_article_saved_in_the_console_is_embedded_by_the_workers(infra, tmp_path):
    with (
        running_stack(infra, tmp_path / "stack") as (_stack, container),
        running_console(infra, tmp_path / "console", with_oidc=False) as console,
    ):
        assert container is not None and container.embedder is not None
        http, csrf = console.sign_in(console.add_staff(GLOW, StaffRole.MANAGER))
        body = "\n\n".join(
            f"Paragraph {i}: gift cards {uuid.uuid4().hex} can be used for any treatment." for i in range(3)
        )
        created = http.post(
            f"/api/v1/clinics/{GLOW}/kb/articles",
            json={"title": f"Gift cards {uuid.uuid4().hex[:6]}", "body": body},
            headers={"X-CSRF-Token": csrf, "Origin": console.base_url},
        )
        assert created.status_code == 201, created.text
        document_id = created.json()["id"]

        def embedded() -> tuple[int, int, set[str]] | None:
            with console.database.tenant_scope(GLOW) as session:
                rows = session.execute(
                    text("SELECT embedding IS NOT NULL, embedding_model FROM kb_chunks WHERE document_id = :d"),
                    {"d": document_id},
                ).all()
            done = sum(1 for has, _ in rows if has)
            return (done, len(rows), {m for _, m in rows}) if rows and done == len(rows) else None

        done, total, models = wait_for(embedded, 60, what="the worker to embed the article's chunks")
        assert done == total >= 1 and models == {container.embedder.name}


def _zone_at_midday() -> str:
    """A fixed-offset zone where it is about noon now: inside every recipient's 08:00-21:00 marketing window."""
    offset = (12 - datetime.now(UTC).hour + 12) % 24 - 12  # -12..11
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-5 is UTC+5


def test_a_campaign_sent_from_the_console_reaches_its_recipients_and_the_report_counts_them(infra, tmp_path):
    tag = f"e2e{uuid.uuid4().hex[:6]}"
    with (
        running_stack(infra, tmp_path / "stack") as (stack, _container),
        running_console(infra, tmp_path / "console", with_oidc=False) as console,
    ):
        phones = []
        for name in ("Uma", "Vic"):
            patient = add_patient(console.database, GLOW, name=f"{name} {tag}")
            phones.append(patient.phone)
            with console.database.tenant_scope(GLOW) as session:
                session.execute(
                    text(
                        "UPDATE clients SET tags = ARRAY[:t], marketing_consent = 'granted', timezone = :z "
                        "WHERE id = :id"
                    ),
                    {"t": tag, "z": _zone_at_midday(), "id": patient.client_id},
                )
        http, csrf = console.sign_in(console.add_staff(GLOW, StaffRole.OWNER))
        headers = {"X-CSRF-Token": csrf, "Origin": console.base_url}
        base = f"/api/v1/clinics/{GLOW}/campaigns"
        campaign = http.post(
            base,
            json={
                "name": f"Console {tag}",
                "template": "Hi {first_name}, new facials this week!",
                "segment": {"tags": [tag]},
            },
            headers=headers,
        ).json()
        assert http.post(f"{base}/{campaign['id']}/send", headers=headers).json()["status"] == "sending"

        def delivered() -> dict | None:
            report = http.get(f"{base}/{campaign['id']}/report").json()
            return report if report["sent"] >= 2 or report["status"] == "completed" else None

        report = wait_for(delivered, 90, what="the campaign to reach both recipients")
        assert report["recipients"] == 2 and report["failed"] == 0
        for phone, name in zip(phones, ("Uma", "Vic"), strict=True):
            texts = stack.wait_replies(phone, 1)
            assert texts[0].startswith(f"Hi {name}, new facials this week!")
