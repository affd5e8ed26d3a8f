"""Knowledge-base articles, automations, campaigns (read-only here), the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

_ARTICLES = """
SELECT d.id, d.slug, d.title, d.source, d.updated_at,
       (SELECT count(*) FROM kb_chunks k WHERE k.document_id = d.id) AS chunks
FROM kb_documents d
WHERE (CAST(:q AS text) IS NULL OR d.title ILIKE :pattern OR d.slug ILIKE :pattern)
  AND (CAST(:after_id AS bigint) IS NULL OR d.id > CAST(:after_id AS bigint))
ORDER BY d.id LIMIT :limit
"""
_ARTICLE = "SELECT id, slug, title, source, body, updated_at FROM kb_documents WHERE id = :id"
_AUTOMATIONS = "SELECT id, kind, enabled, template, settings FROM automations ORDER BY kind, id"
_AUDIT = """
SELECT id, created_at, staff_user_id, actor, action, target_type, target_id, client_id, detail, ip
FROM staff_audit_log
WHERE (CAST(:client_id AS bigint) IS NULL OR client_id = CAST(:client_id AS bigint))
  AND (CAST(:before_id AS bigint) IS NULL OR id < CAST(:before_id AS bigint))
ORDER BY id DESC LIMIT :limit
"""


def articles(session: Session, *, q: str | None, after_id: int | None, limit: int) -> list[dict[str, Any]]:
    q = (q or "").strip() or None
    escaped = (q or "").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    params = {"q": q, "pattern": f"%{escaped}%", "after_id": after_id, "limit": limit}
    return [dict(r) for r in session.execute(text(_ARTICLES), params).mappings()]


def article(session: Session, article_id: int) -> dict[str, Any] | None:
    row = session.execute(text(_ARTICLE), {"id": article_id}).mappings().one_or_none()
    return dict(row) if row else None


def automations(session: Session) -> list[dict[str, Any]]:
    return [dict(r) for r in session.execute(text(_AUTOMATIONS)).mappings()]


def campaigns(session: Session, clinic_id: int) -> list[dict[str, Any]]:
    from worker.campaigns.lifecycle import list_campaigns  # the campaigns feature's own list (one home)

    return [campaign.as_dict() for campaign in list_campaigns(session, clinic_id)]


def campaign_report(session: Session, clinic_id: int, campaign_id: int, now: datetime) -> dict[str, Any] | None:
    from worker.campaigns.lifecycle import CampaignError
    from worker.campaigns.report import report  # the campaigns feature's own report (one home)

    try:
        return report(session, clinic_id, campaign_id, now).as_dict()
    except CampaignError:
        return None


def audit_log(session: Session, *, client_id: int | None, before_id: int | None, limit: int) -> list[dict[str, Any]]:
    params = {"client_id": client_id, "before_id": before_id, "limit": limit}
    return [dict(r) for r in session.execute(text(_AUDIT), params).mappings()]
