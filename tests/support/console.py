"""The staff console for tests: the real app over HTTP (uvicorn in a thread) on the real database, staff users
and patient data made through the same code the CLI uses, and a signed-in HTTP client."""

from __future__ import annotations

import contextlib
import functools
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import text

from console import store
from console.passwords import hash_password
from db.engine import Database, make_engine
from domain.staff_access import StaffRole
from medspa.devstack import free_port
from medspa.services import Infrastructure
from medspa.settings import Settings
from tests.fakes.oidc_provider import FakeOidcProvider
from tests.support.infra import wait_for

CONSOLE_SECRET = secrets.token_hex(32)
PASSWORD = "correct horse battery staple"
OIDC_CLIENT_ID = "medspa-console-test"
OIDC_CLIENT_SECRET = secrets.token_urlsafe(24)
OIDC_DOMAIN = "glow.example"
GLOW, HARBOR = 1, 2
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
_SIGNIN_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def console_settings(infra: Infrastructure, data_dir: Path, port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": infra.database_url,
        "redis_url": infra.redis_url,
        "data_dir": data_dir,
        "environment": "test",
        "log_json": True,
        "console_public_url": f"http://127.0.0.1:{port}",
        "console_secret_key": CONSOLE_SECRET,
    }
    values.update(overrides)
    return Settings(**values)


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        pass


@functools.lru_cache(maxsize=16)
def _password_hash(password: str) -> str:
    """One argon2id hash per test password, shared by the accounts added with it: hashing costs ~0.1 s of CPU by
    design (more on a loaded machine) and the tests add dozens of accounts.  Signing in still verifies it."""
    return hash_password(password)


@dataclass
class StaffAccount:
    id: int
    email: str
    password: str | None
    role: StaffRole
    clinic_id: int
    provider_id: int | None = None


@dataclass
class ConsoleStack:
    base_url: str
    settings: Settings
    database: Database
    oidc: FakeOidcProvider | None
    clients: list[httpx.Client] = field(default_factory=list)

    # ------------------------------------------------------------ staff
    def add_staff(
        self,
        clinic_id: int,
        role: StaffRole,
        *,
        provider_id: int | None = None,
        email: str | None = None,
        password: str | None = PASSWORD,
    ) -> StaffAccount:
        email = email or f"{role.value}-{uuid.uuid4().hex[:8]}@{OIDC_DOMAIN}"
        with self.database.tenant_scope(clinic_id) as session:
            existing = store.find_for_sign_in(session, email)
            user_id = (
                existing.id
                if existing
                else store.create_user(
                    session,
                    email=email,
                    display_name=role.value.title(),
                    password_hash=_password_hash(password) if password else None,
                )
            )
            store.set_membership(
                session, clinic_id=clinic_id, staff_user_id=user_id, role=role, provider_id=provider_id
            )
        return StaffAccount(user_id, email, password, role, clinic_id, provider_id)

    # ------------------------------------------------------------ HTTP
    def client(self, *, forwarded_for: str | None = None) -> httpx.Client:
        # uvicorn trusts X-Forwarded-For from 127.0.0.1: each test can act from its own address, so the per-IP
        # sign-in lockout of one test never spills into another.
        headers = {"X-Forwarded-For": forwarded_for or f"198.51.100.{uuid.uuid4().int % 250 + 1}"}
        http = httpx.Client(base_url=self.base_url, timeout=15, headers=headers, follow_redirects=False)
        self.clients.append(http)
        return http

    def sign_in(self, account: StaffAccount, http: httpx.Client | None = None) -> tuple[httpx.Client, str]:
        """A client holding a signed-in session, and the session's CSRF token."""
        http = http or self.client()
        response = self.post_sign_in(http, account.email, account.password or "")
        assert response.status_code == 303, response.text
        page = http.get(
            response.headers["location"] if response.headers["location"] != "/" else "/clinics", follow_redirects=True
        )
        match = _CSRF_META.search(page.text)
        assert match, page.text[:500]
        return http, match.group(1)

    def post_sign_in(self, http: httpx.Client, email: str, password: str, next_path: str = "/") -> httpx.Response:
        form = http.get("/sign-in")
        token = _SIGNIN_TOKEN.search(form.text)
        assert token, form.text[:300]
        return http.post(
            "/sign-in",
            data={"csrf_token": token.group(1), "email": email, "password": password, "next": next_path},
            headers={"Origin": self.base_url},
        )

    def signin_token(self, http: httpx.Client) -> str:
        match = _SIGNIN_TOKEN.search(http.get("/sign-in").text)
        assert match
        return match.group(1)


# ------------------------------------------------------------------ patient data
@dataclass
class Patient:
    client_id: int
    name: str
    phone: str
    conversation_id: int


def future_slot(days: int | None = None) -> datetime:
    """A start far enough out (and spread) that appointments of concurrent tests never overlap."""
    offset = days if days is not None else 400 + uuid.uuid4().int % 3000
    return datetime(2031, 1, 6, 17, 0, tzinfo=UTC) + timedelta(days=offset, minutes=15 * (uuid.uuid4().int % 20))


def add_patient(
    database: Database,
    clinic_id: int,
    *,
    provider_id: int | None = None,
    starts_at: datetime | None = None,
    handoff: str | None = None,
    name: str | None = None,
    body: str = "Hello, is my appointment still on?",
) -> Patient:
    """A client with a consent record, an SMS conversation (already answered: nothing for the workers of other tests
    sharing this database to pick up) and optionally an appointment with ``provider_id``."""
    name = name or f"Patient {uuid.uuid4().hex[:6]}"
    phone = "+1415" + str(uuid.uuid4().int % 10**7).zfill(7)
    with database.tenant_scope(clinic_id) as session:
        client_id = session.execute(
            text(
                "INSERT INTO clients (clinic_id, phone_e164, name, consent_state) VALUES (:c, :p, :n, 'opted_in') RETURNING id"
            ),
            {"c": clinic_id, "p": phone, "n": name},
        ).scalar_one()
        session.execute(
            text("""INSERT INTO consent_events (clinic_id, client_id, phone_e164, kind, source, wording)
                    VALUES (:c, :id, :p, 'opt_in', 'staff', 'Agreed to texts at the front desk')"""),
            {"c": clinic_id, "id": client_id, "p": phone},
        )
        conversation_id = session.execute(
            text("""INSERT INTO conversations (clinic_id, client_id, channel, agent_state, handoff_urgency,
                                               handoff_reason, last_message_at, last_inbound_seq, answered_seq)
                    VALUES (:c, :id, 'sms', :state, :urgency, :reason, now(), 1, 1) RETURNING id"""),
            {
                "c": clinic_id,
                "id": client_id,
                "state": "handoff" if handoff else "idle",
                "urgency": handoff,
                "reason": "asked for a person" if handoff else "",
            },
        ).scalar_one()
        session.execute(
            text("""INSERT INTO messages (clinic_id, conversation_id, direction, role, body, channel, inbound_seq)
                    VALUES (:c, :v, 'inbound', 'user', :b, 'sms', 1)"""),
            {"c": clinic_id, "v": conversation_id, "b": body},
        )
        if provider_id is not None:
            start = starts_at or future_slot()
            service_id = session.execute(text("SELECT id FROM services ORDER BY id LIMIT 1")).scalar_one()
            session.execute(
                text("""INSERT INTO appointments (clinic_id, client_id, provider_id, service_id, starts_at, ends_at,
                                                  blocked_until, status)
                        VALUES (:c, :cl, :p, :s, :t, :t + interval '30 minutes', :t + interval '30 minutes', 'booked')"""),
                {"c": clinic_id, "cl": client_id, "p": provider_id, "s": service_id, "t": start},
            )
    return Patient(int(client_id), name, phone, int(conversation_id))


def provider_ids(database: Database, clinic_id: int) -> list[int]:
    with database.tenant_scope(clinic_id) as session:
        return [int(i) for i in session.execute(text("SELECT id FROM providers ORDER BY id")).scalars()]


@contextlib.contextmanager
def running_console(
    infra: Infrastructure, data_dir: Path, *, with_oidc: bool = True, **overrides: Any
) -> Iterator[ConsoleStack]:
    from console.app import create_app

    port = free_port()
    oidc = FakeOidcProvider(OIDC_CLIENT_ID, OIDC_CLIENT_SECRET).start() if with_oidc else None
    if oidc is not None:
        overrides = {
            "console_oidc_issuer": oidc.issuer,
            "console_oidc_client_id": OIDC_CLIENT_ID,
            "console_oidc_client_secret": OIDC_CLIENT_SECRET,
            "console_oidc_allowed_domains": OIDC_DOMAIN,
            "console_oidc_provider_name": "Test SSO",
            **overrides,
        }
    settings = console_settings(infra, data_dir, port, **overrides)
    database = Database(make_engine(infra.database_url, pool_size=4))
    config = uvicorn.Config(
        create_app(settings, database=database),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        access_log=False,
        # A live-inbox stream a test left open would hold the shutdown for its whole heartbeat period: cut it.
        timeout_graceful_shutdown=1,
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, name="console", daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, what="the console to start")
    stack = ConsoleStack(f"http://127.0.0.1:{port}", settings, database, oidc)
    try:
        yield stack
    finally:
        for http in stack.clients:
            http.close()
        server.should_exit = True
        thread.join(10)
        if oidc is not None:
            oidc.stop()
        database.dispose()
