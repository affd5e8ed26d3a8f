"""Templates and the headers every page carries."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from starlette.responses import HTMLResponse

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
HTMX = "htmx-2.0.11.min.js"

# Scripts and styles from our own origin only (no inline script, no eval), no framing, forms post only here.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,  # every value is HTML-escaped: patient text can never become markup
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _local(value: datetime | None, timezone: str, fmt: str = "%a %b %-d, %-I:%M %p") -> str:
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(timezone)).strftime(fmt)


def _money(cents: int | None) -> str:
    return "" if cents is None else f"${cents / 100:,.2f}"


def _label(value: str | None) -> str:
    return (value or "").replace("_", " ")


_ENV.filters["local"] = _local
_ENV.filters["money"] = _money
_ENV.filters["label"] = _label
_ENV.globals["HTMX"] = HTMX


def render(
    template: str, context: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> HTMLResponse:
    html = _ENV.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})
