"""Static checks on the embeddable chat widget (webhooks/static).

The widget runs inside clinics' own pages, so the properties that matter most are ones a quick
read can lose track of: message text never goes through an HTML parser, links are built only for
http(s), nothing leaks CSS into (or loads code from) elsewhere, and the wire contract with the
server keeps its names. Behaviour in a real browser is covered by browser-marked tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "webhooks" / "static"
JS_PATH = STATIC / "widget.js"
CSS_PATH = STATIC / "widget.css"
DEMO_PATH = STATIC / "demo.html"


def _strip_js_comments(src: str) -> str:
    """Drop /* */ and // comments (naively, but our source has no '//' inside strings but URLs)."""
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    return re.sub(r"(?m)(^|[^:'\"\\])//.*$", r"\1", src)


@pytest.fixture(scope="module")
def js() -> str:
    return JS_PATH.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def js_code(js: str) -> str:
    return _strip_js_comments(js)


@pytest.fixture(scope="module")
def css() -> str:
    return re.sub(r"/\*.*?\*/", "", CSS_PATH.read_text(encoding="utf-8"), flags=re.S)


# ---------------------------------------------------------------- injection safety


@pytest.mark.parametrize(
    "sink",
    [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "DOMParser",
        "createContextualFragment",
        "srcdoc",
    ],
)
def test_widget_never_uses_an_html_parsing_sink(js: str, sink: str) -> None:
    assert sink not in js, f"widget.js must not use {sink}; set message text with textContent"


def test_message_text_is_set_through_text_nodes(js_code: str) -> None:
    assert "textContent" in js_code
    assert "createTextNode" in js_code


def test_links_are_built_with_scheme_check_and_safe_rel(js_code: str) -> None:
    # The only way an href gets set is setAttribute('href', <value returned by safeHref>).
    assert re.findall(r"\.href\s*=", js_code) == []
    assert re.findall(r"setAttribute\('href',\s*(\w+)\)", js_code) == ["href"]
    assert re.search(r"var href = safeHref\(", js_code)
    safe_href_body = js_code[js_code.index("function safeHref") : js_code.index("function appendRichText")]
    assert "'http:'" in safe_href_body and "'https:'" in safe_href_body
    assert "javascript" not in safe_href_body
    assert "'noopener noreferrer'" in js_code
    assert "'_blank'" in js_code


def test_timers_never_take_code_strings(js_code: str) -> None:
    assert not re.search(r"set(Timeout|Interval)\(\s*['\"`]", js_code)


# ---------------------------------------------------------------- packaging: one IIFE, ES2017, no deps


def test_widget_is_a_single_iife(js_code: str) -> None:
    body = js_code.strip()
    assert body.startswith("(function () {")
    assert body.endswith("})();")
    assert body.count("(function () {\n  'use strict';") == 1


@pytest.mark.parametrize(
    ("pattern", "feature"),
    [
        (r"[\w)\]]\?\.[\w(\[]", "optional chaining (ES2020)"),
        (r"\?\?", "nullish coalescing (ES2020)"),
        (r"catch\s*\{", "optional catch binding (ES2019)"),
        (r"\.\.\.", "spread/rest (object spread is ES2018)"),
        (r"^\s*(import|export)\s", "ES modules"),
        (r"\bclass\s+\w+", "classes (kept out for simplicity)"),
        (r"\.flat(Map)?\(|\.matchAll\(|\.replaceAll\(|Object\.fromEntries", "post-ES2017 library calls"),
    ],
)
def test_widget_stays_within_es2017(js_code: str, pattern: str, feature: str) -> None:
    assert not re.search(pattern, js_code, flags=re.M), f"widget.js uses {feature}"


def test_widget_loads_nothing_from_third_parties(js_code: str) -> None:
    urls = re.findall(r"https?://[^\s'\"]+", js_code)
    assert urls == ["http://www.w3.org/2000/svg"], urls
    assert "import(" not in js_code
    assert "createElement('script')" not in js_code


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_widget_parses_as_a_classic_script() -> None:
    result = subprocess.run(["node", "--check", str(JS_PATH)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- server contract


@pytest.mark.parametrize(
    "needle",
    [
        "'/webhooks/chat/session'",
        "'/webhooks/chat/messages'",
        "'/webhooks/chat/stream'",
        "'/webhooks/chat/stream-ticket'",
        "'?ticket='",
        "stream_ticket",
        "'ended'",
        "'/webhooks/chat/handover'",
        "'/widget.css'",
        "'&last_event_id='",
        "client_message_id",
        "session_token",
        "clinic_key",
        "consent_text",
        "'Bearer '",
        "'Retry-After'",
        "'typing'",
        "'message'",
        "data-api-base",
        "data-clinic-key",
        "document.currentScript",
        "localStorage",
    ],
)
def test_widget_speaks_the_server_contract(js_code: str, needle: str) -> None:
    assert needle in js_code


def test_the_session_token_never_goes_into_a_url(js_code: str) -> None:
    # EventSource cannot send headers; the stream is opened with a short-lived ticket instead of the token.
    assert "token=" not in js_code
    assert re.search(r"STREAM_URL \+ '\?ticket=' \+ encodeURIComponent\(ticket\)", js_code)


def test_rate_limit_and_handover_texts_match_the_contract(js_code: str) -> None:
    assert "You're sending messages quickly — please wait a moment." in js_code
    assert "Thanks — we'll text you shortly." in js_code
    assert (
        "'I agree to receive text messages from ' + name +\n"
        "      ' about my request. Msg & data rates may apply. Reply STOP to opt out.'"
    ) in js_code


def test_client_message_id_is_a_uuid4(js_code: str) -> None:
    assert "randomUUID" in js_code
    # Fallback path sets the version and variant bits.
    assert "(bytes[6] & 0x0f) | 0x40" in js_code
    assert "(bytes[8] & 0x3f) | 0x80" in js_code


def test_stream_backoff_caps_at_thirty_seconds(js_code: str) -> None:
    assert "STREAM_MAX_BACKOFF_MS = 30000" in js_code
    assert "1000 * Math.pow(2, state.esFailures - 1)" in js_code


# ---------------------------------------------------------------- accessibility and test hooks


@pytest.mark.parametrize(
    "testid",
    [
        "msa-launcher",
        "msa-panel",
        "msa-input",
        "msa-send",
        "msa-message",
        "msa-typing",
        "msa-chip",
        "msa-close",
        "msa-error",
    ],
)
def test_every_contract_test_id_exists(js_code: str, testid: str) -> None:
    assert f"'data-testid': '{testid}'" in js_code


@pytest.mark.parametrize(
    "needle",
    [
        "role: 'dialog'",
        "'aria-modal': 'false'",
        "'aria-labelledby': 'msa-title'",
        "role: 'log'",
        "'aria-live': 'polite'",
        "typing: 'Assistant is typing'",
        "message: 'Message'",
        "openChatWith: 'Open chat with '",
        "'data-role': role",
        "ev.key === 'Escape'",
        "ev.key === 'Enter' && !ev.shiftKey",
    ],
)
def test_accessibility_hooks_present(js_code: str, needle: str) -> None:
    assert needle in js_code


def test_every_class_the_widget_sets_is_namespaced(js_code: str) -> None:
    names: list[str] = []
    for value in re.findall(r"'class':\s*'([^']*)'", js_code):
        names.extend(value.split())
    for value in re.findall(r"\.className\s*=\s*'([^']*)'", js_code):
        names.extend(value.split())
    names.extend(re.findall(r"classList\.(?:add|remove|toggle|contains)\('([^']*)'", js_code))
    assert names, "expected to find class names"
    assert [n for n in names if not n.startswith("msa-")] == []


# ---------------------------------------------------------------- CSS isolation


def _css_selectors(css: str) -> list[str]:
    """Top-level and @media rule selectors, skipping @keyframes blocks."""
    css = re.sub(r"@keyframes[^{]+\{(?:[^{}]*\{[^{}]*\})*\s*\}", "", css)
    css = re.sub(r"@media[^{]+\{", "", css)
    selectors: list[str] = []
    for block in re.findall(r"([^{}]+)\{[^{}]*\}", css):
        # Split on commas outside parentheses, so ":where(div, p)" stays one selector.
        selectors.extend(s.strip() for s in re.split(r",(?![^()]*\))", block) if s.strip())
    return selectors


def test_every_css_rule_is_scoped_under_the_root(css: str) -> None:
    selectors = _css_selectors(css)
    assert len(selectors) > 40
    assert [s for s in selectors if not s.startswith("#msa-root")] == []


def test_every_css_class_and_animation_is_namespaced(css: str) -> None:
    classes = set(re.findall(r"\.(-?[_a-zA-Z][\w-]*)", re.sub(r"\d+\.\d+", "", css)))
    assert classes and [c for c in classes if not c.startswith("msa-")] == []
    keyframes = re.findall(r"@keyframes\s+([\w-]+)", css)
    assert keyframes and all(k.startswith("msa-") for k in keyframes)


def test_css_loads_nothing_external(css: str) -> None:
    assert "@import" not in css
    assert "url(" not in css


def test_panel_goes_full_screen_on_small_screens(css: str) -> None:
    media = css[css.index("@media (max-width: 480px)") :]
    panel_rule = media[media.index("#msa-root .msa-panel") :]
    panel_rule = panel_rule[: panel_rule.index("}")]
    for decl in ("top: 0", "left: 0", "right: 0", "bottom: 0", "width: 100%", "height: 100%"):
        assert decl in panel_rule


# ---------------------------------------------------------------- demo page


def test_demo_embeds_the_widget_like_a_clinic_would() -> None:
    html = DEMO_PATH.read_text(encoding="utf-8")
    assert '<script src="/widget.js" data-clinic-key="glow-medspa-public" async></script>' in html
    assert "Glow MedSpa" in html
    assert 'id="services"' in html and "Hours" in html
    # Self-contained: no remote fonts, images or scripts.
    assert re.findall(r"(?:src|href)=\"https?://", html) == []
    assert "url(" not in html
