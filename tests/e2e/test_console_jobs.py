"""What the console hands to the workers, end to end with a real Dramatiq worker: an article saved in the console
is embedded by the worker's embedder (the OpenAI SDK against the local fake), through ``embed_kb_document`` —
the console itself never loads a model."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from domain.staff_access import StaffRole
from tests.support.console import GLOW, running_console
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
