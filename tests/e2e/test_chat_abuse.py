"""The chat endpoints under abuse (real app over HTTP, real Redis and Postgres).

Floods of sessions, messages and streams are limited per client IP and per clinic (429), SMS ingress keeps
working meanwhile, a process's streams share one Redis connection, a chat token can only ever touch a chat
conversation, and staff can revoke a session.  Client IPs are varied with X-Forwarded-For, which uvicorn
honours from its trusted proxy (loopback here) — as production honours it from the reverse proxy.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis
from sqlalchemy import text

from medspa.devstack import free_port
from tests.e2e.test_cli_clinic import medspa
from tests.fakes.twilio_api import twilio_signature
from tests.support.infra import wait_for
from tests.support.stack import CHAT_SECRET, GLOW_NUMBER, TWILIO_TOKEN, running_stack
from webhooks.chat_tokens import ChatClaims, issue_ticket, issue_token

ORIGIN = "http://127.0.0.1:8000"  # on the demo clinic's chat allow-list


def _ip() -> str:
    return f"198.51.100.{random.randint(1, 254)}" if random.random() < 0.5 else f"203.0.113.{random.randint(1, 254)}"


def _phone() -> str:
    return "+1415888" + str(random.randint(0, 9999)).zfill(4)


def _rate_limits_fell_back(metrics_port: int) -> bool:
    """Whether a rate-limit check went to the webhook's in-process counters because Redis answered too slowly
    (``webhooks/ratelimit.py``: failing open, counted by ``medspa_webhook_redis_fail_open_total``)."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    return any(
        line.startswith('medspa_webhook_redis_fail_open_total{operation="rate_limit"') and float(line.split()[-1]) > 0
        for line in text.splitlines()
    )


def _new_session(http: httpx.Client, base: str, ip: str | None = None) -> httpx.Response:
    headers = {"Origin": ORIGIN} | ({"X-Forwarded-For": ip} if ip else {})
    return http.post(base + "/webhooks/chat/session", json={"clinic_key": "glow-medspa-public"}, headers=headers)


def _sms(base: str, form: dict[str, str]) -> int:
    url = base + "/webhooks/twilio/sms"
    with httpx.Client(timeout=15) as client:
        return client.post(
            url, data=form, headers={"X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, url, form)}
        ).status_code


def _recorded(database, sids: list[str]) -> int:
    with database.tenant_scope(1) as session:
        return int(
            session.execute(
                text("SELECT count(*) FROM inbox_events WHERE provider_event_id = ANY(:s)"), {"s": sids}
            ).scalar_one()
        )


def test_a_chat_session_flood_is_limited_and_sms_ingress_keeps_working(infra, tmp_path):
    limits = {
        "rate_limit_chat_sessions_per_ip_per_min": 5,
        "rate_limit_chat_sessions_per_clinic_per_min": 10,
        "rate_limit_chat_messages_per_ip_per_min": 5,
    }
    # The app's metrics listener, to tell whether a check fell back to the in-process counters.
    with running_stack(infra, tmp_path, webhook_metrics_port=free_port(), **limits) as (stack, _):
        base = stack.base_url
        forms = [stack.sms_form(GLOW_NUMBER, _phone(), f"hello during the flood {n}") for n in range(20)]
        flooder = _ip()
        with httpx.Client(timeout=15, limits=httpx.Limits(max_connections=40)) as http:
            messenger = _new_session(http, base, "192.0.2.77").json()  # for the message flood below
            with ThreadPoolExecutor(40) as pool:
                from_one_ip = [pool.submit(_new_session, http, base, flooder) for _ in range(60)]
                texts = [pool.submit(_sms, base, form) for form in forms]
                one_ip = [f.result().status_code for f in from_one_ip]
                sms = [f.result() for f in texts]
            # Many addresses, one clinic: the clinic's limit holds.
            with ThreadPoolExecutor(20) as pool:
                many_ips = [r.status_code for r in pool.map(lambda _: _new_session(http, base, _ip()), range(60))]

            # Messages per IP: one session, many messages from one address.
            token = messenger["session_token"]
            headers = {"Authorization": f"Bearer {token}", "Origin": ORIGIN, "X-Forwarded-For": "192.0.2.77"}
            sent = [
                http.post(
                    base + "/webhooks/chat/messages",
                    json={"text": f"message {n}", "client_message_id": uuid.uuid4().hex},
                    headers=headers,
                )
                for n in range(20)
            ]
        stack.wait_idle()  # what was accepted is answered (and nothing is left for later tests)
        fell_back = _rate_limits_fell_back(stack.settings.webhook_metrics_port)

    assert sms == [200] * len(forms)  # SMS ingress never noticed the flood
    assert _recorded(stack.database, [f["MessageSid"] for f in forms]) == len(forms)
    # Fixed one-minute windows: a burst straddling a boundary may get two windows' worth, never more — and when
    # Redis answered a check too slowly (a loaded machine), the in-process fallback counts up to as many again.
    windows = 4 if fell_back else 2
    assert one_ip.count(200) <= windows * 5 and one_ip.count(429) >= 60 - windows * 5, one_ip
    assert set(one_ip) <= {200, 429}
    assert many_ips.count(200) <= windows * 10 and many_ips.count(429) >= 60 - windows * 10, many_ips
    statuses = [r.status_code for r in sent]
    assert statuses.count(202) <= windows * 5 and statuses.count(429) >= 20 - windows * 5, statuses
    # Every refusal says when to come back.  (Not "the last message was refused": a check that fell back to the
    # in-process counter — Redis slow on a loaded machine — starts that process's count afresh, so a late message
    # may be let through, within the fallback's allowance counted above.)
    refused = [r for r in sent if r.status_code == 429]
    assert refused and all(r.headers.get("retry-after") for r in refused), [dict(r.headers) for r in refused]


def _open_stream(
    stack: contextlib.ExitStack, http: httpx.Client, url: str, ip: str
) -> tuple[httpx.Response, Iterator[str]]:
    response = stack.enter_context(http.stream("GET", url, headers={"X-Forwarded-For": ip, "Origin": ORIGIN}))
    lines = response.iter_lines()
    if response.status_code == 200:
        assert next(lines).startswith(": connected")
    return response, lines


def _stream_url(base: str, ticket: str) -> str:
    return f"{base}/webhooks/chat/stream?ticket={ticket}"


def test_streams_are_capped_per_ip_and_per_process_and_share_one_redis_connection(infra, tmp_path):
    caps = {"chat_streams_per_ip": 3, "chat_streams_per_process": 12}
    with running_stack(infra, tmp_path, **caps) as (stack, _):
        base = stack.base_url
        monitor = redis.Redis.from_url(infra.redis_url)
        with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64)) as http, contextlib.ExitStack() as open_:
            first = _new_session(http, base).json()
            ips = [f"192.0.2.{n}" for n in range(10, 16)]
            # One address: three streams, the fourth refused.
            per_ip = [_open_stream(open_, http, _stream_url(base, first["stream_ticket"]), ips[0]) for _ in range(4)]
            # Other addresses until the process is full (12), then refused whatever the address.
            others = [
                _open_stream(open_, http, _stream_url(base, first["stream_ticket"]), ip)
                for ip in ips[1:]
                for _ in range(3)
            ]
            by_name: dict[str, int] = {}
            for client in monitor.client_list():
                by_name[client.get("name", "")] = by_name.get(client.get("name", ""), 0) + 1
            forms = [stack.sms_form(GLOW_NUMBER, _phone(), f"while streams are open {n}") for n in range(10)]
            with ThreadPoolExecutor(10) as pool:
                sms = list(pool.map(lambda f: _sms(base, f), forms))

            # A reply published for the conversation reaches every open stream of it (in-process fan-out).
            monitor.xadd(
                f"chat:stream:{first['conversation_id']}",
                {"event": "message", "data": '{"id": "m-fanout", "role": "assistant", "text": "hello"}'},
            )
            streams = [lines for response, lines in per_ip + others if response.status_code == 200]
            for lines in streams[:3]:
                wait_for(lambda lines=lines: "m-fanout" in next(lines), 10, interval=0, what="the reply on a stream")
            stack.wait_idle()
        monitor.close()

    assert [r.status_code for r, _ in per_ip] == [200, 200, 200, 429]
    statuses = [r.status_code for r, _ in others]
    assert statuses.count(200) == 12 - 3 and statuses.count(429) == 6, statuses
    assert by_name.get("medspa-webhooks-streams", 0) == 1, by_name  # 12 streams, one Redis connection
    assert sms == [200] * len(forms)
    assert _recorded(stack.database, [f["MessageSid"] for f in forms]) == len(forms)


def _sms_conversation(stack, phone: str) -> tuple[int, int]:
    stack.send_sms(GLOW_NUMBER, phone, "hi, it's me")

    def found() -> tuple[int, int] | None:
        with stack.database.tenant_scope(1) as session:
            row = session.execute(
                text(
                    """SELECT c.id, c.client_id FROM conversations c JOIN clients cl ON cl.id = c.client_id
                       WHERE cl.phone_e164 = :p AND c.channel = 'sms'"""
                ),
                {"p": phone},
            ).first()
        return (int(row[0]), int(row[1])) if row else None

    return wait_for(found, 30, what="the SMS conversation")


def test_a_chat_token_for_an_sms_conversation_is_refused(stack, owner_engine):
    conversation_id, client_id = _sms_conversation(stack, _phone())
    stack.wait_idle()
    chat = stack.base_url + "/webhooks/chat"
    expires = int(time.time()) + 3600
    # What a leaked (or placeholder) secret lets anyone mint: a token naming the SMS conversation.
    forged = ChatClaims("forged-session-0001", 1, conversation_id, client_id, expires)
    # Worse: a session row that points at it (a bug, a bad migration): the channel check still refuses.
    planted = ChatClaims("planted-session-0001", 1, conversation_id, client_id, expires)
    with owner_engine.begin() as conn:
        conn.execute(
            text(
                """INSERT INTO chat_sessions (clinic_id, token_id, client_id, conversation_id, origin, expires_at)
                   VALUES (1, :t, :u, :c, :o, now() + interval '1 hour') ON CONFLICT (token_id) DO NOTHING"""
            ),
            {"t": planted.session_id, "u": client_id, "c": conversation_id, "o": ORIGIN},
        )
    for claims in (forged, planted):
        token = issue_token(CHAT_SECRET, claims)
        auth = {"Authorization": f"Bearer {token}", "Origin": ORIGIN}
        posted = stack.http.post(
            chat + "/messages",
            json={"text": "cancel my appointment", "client_message_id": uuid.uuid4().hex},
            headers=auth,
        )
        assert posted.status_code == 401, posted.text
        assert stack.http.post(chat + "/stream-ticket", headers=auth).status_code == 401
        assert stack.http.get(chat + "/stream", headers=auth).status_code == 401
        ticket, _ = issue_ticket(CHAT_SECRET, claims, 60)
        assert stack.http.get(chat + f"/stream?ticket={ticket}").status_code == 401
        handover = stack.http.post(
            chat + "/handover", json={"phone": "+14155550111", "consent": True, "consent_text": "ok"}, headers=auth
        )
        assert handover.status_code == 401
        resumed = stack.http.post(
            chat + "/session",
            json={"clinic_key": "glow-medspa-public", "session_token": token},
            headers={"Origin": ORIGIN},
        ).json()
        assert resumed["conversation_id"] != conversation_id and resumed["history"] == []  # a fresh chat instead
    with stack.database.tenant_scope(1) as session:
        leaked = session.execute(
            text("SELECT count(*) FROM inbox_events WHERE source = 'chat' AND payload->>'conversation_id' = :c"),
            {"c": str(conversation_id)},
        ).scalar_one()
    assert leaked == 0


def test_staff_revoke_a_chat_session_and_its_token_stops_working(stack, infra):
    chat = stack.base_url + "/webhooks/chat"
    session = stack.http.post(chat + "/session", json={"clinic_key": "glow-medspa-public"}, headers={"Origin": ORIGIN})
    body = session.json()
    auth = {"Authorization": f"Bearer {body['session_token']}", "Origin": ORIGIN}

    def post() -> int:
        message = {"text": "what are your hours?", "client_message_id": uuid.uuid4().hex}
        return stack.http.post(chat + "/messages", json=message, headers=auth).status_code

    assert post() == 202
    assert stack.http.post(chat + "/stream-ticket", headers=auth).status_code == 200

    listed = medspa(
        infra, "chat-sessions", "list", "--clinic", "glow-medspa", "--conversation", str(body["conversation_id"])
    )
    assert listed.returncode == 0, listed.stderr
    session_id = listed.stdout.splitlines()[1].split()[0]
    revoked = medspa(infra, "chat-sessions", "revoke", "--clinic", "glow-medspa", "--session", session_id)
    assert revoked.returncode == 0 and "revoked 1 chat session" in revoked.stdout, revoked.stderr

    assert post() == 401
    assert stack.http.post(chat + "/stream-ticket", headers=auth).status_code == 401
    assert stack.http.get(chat + f"/stream?ticket={body['stream_ticket']}").status_code == 401  # tickets too
    resumed = stack.http.post(
        chat + "/session",
        json={"clinic_key": "glow-medspa-public", "session_token": body["session_token"]},
        headers={"Origin": ORIGIN},
    ).json()
    assert resumed["conversation_id"] != body["conversation_id"]  # the widget starts over
    again = medspa(infra, "chat-sessions", "revoke", "--clinic", "glow-medspa", "--session", session_id)
    assert again.returncode != 0 and "no open chat session" in again.stderr
    stack.wait_idle()


def test_a_chat_emergency_over_the_message_limit_is_still_accepted(infra, tmp_path):
    with running_stack(infra, tmp_path, rate_limit_per_session_per_min=2) as (stack, _container):
        chat = stack.base_url + "/webhooks/chat"
        session = _new_session(stack.http, stack.base_url, _ip()).json()
        auth = {"Authorization": f"Bearer {session['session_token']}", "Origin": ORIGIN}

        def post(body: str) -> int:
            payload = {"text": body, "client_message_id": uuid.uuid4().hex}
            return stack.http.post(chat + "/messages", json=payload, headers=auth).status_code

        assert [post("hi"), post("what time do you open?")] == [202, 202]
        assert post("and on sunday?") == 429, "an ordinary message over the limit is refused"
        assert post("my lips are turning blue and I can't breathe") == 202
        with stack.database.tenant_scope(1) as db:
            bodies = db.execute(
                text(
                    """SELECT payload->>'body' FROM inbox_events
                       WHERE source = 'chat' AND payload->>'conversation_id' = :c"""
                ),
                {"c": str(session["conversation_id"])},
            ).scalars()
            assert "my lips are turning blue and I can't breathe" in list(bodies)


def test_a_chat_message_nested_thousands_deep_is_a_400(stack):
    session = _new_session(stack.http, stack.base_url, _ip()).json()
    auth = {"Authorization": f"Bearer {session['session_token']}", "Origin": ORIGIN, "Content-Type": "application/json"}
    # 20,000 levels in 40 KB: under the body limit, far past what the JSON parser's recursion allows.
    deep = b'{"text": "hi", "client_message_id": "abcdefgh1234", "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    response = stack.http.post(stack.base_url + "/webhooks/chat/messages", content=deep, headers=auth)
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"], response.text
