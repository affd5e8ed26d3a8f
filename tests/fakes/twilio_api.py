"""Local stand-in for the Twilio Messages API (2010-04-01), checked at the wire.

It accepts what the real API accepts for sending an SMS — a form-encoded
POST with HTTP basic auth of account SID and auth token — and answers with
the same JSON shape, so the official ``twilio`` SDK parses it unchanged.

Like Twilio, a created message is ``queued`` (``accepted`` when sent through a
Messaging Service) with no ``date_sent`` until it leaves Twilio's queue; only
then is it ``sent`` with a ``date_sent``.  The list endpoint filters the way
Twilio documents it: ``To``, ``From``, and ``DateSent`` / ``DateSent<`` /
``DateSent>`` on the sent date — so a message still queued matches no
``DateSent`` filter — newest first, paged by ``PageSize`` (default 50, at most
1000).  ``hold_in_queue`` keeps new messages queued (a provider backlog);
``latency_s`` delays every create (a slow provider).
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

from twilio.request_validator import RequestValidator

from tests.fakes.http import FakeHttpServer, RecordedRequest, Reply, require

_MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Messages\.json$")
_MEDIA_PATH = re.compile(
    r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Messages/MM[0-9a-f]{32}/Media/(?P<me>ME[0-9a-f]{32})$"
)
_CDN_PATH = re.compile(r"^/cdn/(?P<me>ME[0-9a-f]{32})$")
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


def count_segments(body: str) -> int:
    """Segments as Twilio bills them: GSM-7 160/153 per part, else UCS-2 70/67."""
    if all(ch in _GSM7 for ch in body):
        single, multi = 160, 153
        length = sum(2 if ch in "^{}\\[~]|€" else 1 for ch in body)
    else:
        single, multi = 70, 67
        length = len(body.encode("utf-16-le")) // 2
    return 1 if length <= single else -(-length // multi)


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """The X-Twilio-Signature Twilio would send for a webhook POST to ``url`` with ``params``."""
    return RequestValidator(auth_token).compute_signature(url, params)


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


# Statuses of an outbound message before it leaves Twilio (no date_sent yet).
QUEUED_STATUSES = ("accepted", "scheduled", "queued", "sending")


@dataclass
class SentMessage:
    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    date_created: datetime
    num_segments: int
    status: str = "queued"
    date_sent: datetime | None = None


class FakeTwilioApi(FakeHttpServer):
    """POST/GET /2010-04-01/Accounts/{sid}/Messages.json with basic-auth and field checks."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[SentMessage] = []
        self._store_lock = threading.Lock()
        self.hold_in_queue = False  # new messages stay queued (no date_sent) until release_queue()
        self.latency_s = 0.0  # every create answers this much later (a slow provider; the message exists already)
        self._slow_next: deque[float] = deque()
        self.media: dict[str, tuple[str, bytes]] = {}  # ME sid -> (content type, bytes)

    # ------------------------------------------------------------ inbound media (MMS)
    def add_media(self, content_type: str, data: bytes) -> str:
        """Store a photo as if a patient had texted it; returns its media URL as Twilio puts it in the inbound
        webhook (``MediaUrl0``): on api.twilio.com, under this account, behind HTTP basic auth."""
        media_sid = "ME" + secrets.token_hex(16)
        message_sid = "MM" + secrets.token_hex(16)
        with self._store_lock:
            self.media[media_sid] = (content_type, data)
        return f"https://api.twilio.com/2010-04-01/Accounts/{self.account_sid}/Messages/{message_sid}/Media/{media_sid}"

    def _media(self, request: RecordedRequest) -> Reply | None:
        """GET a media URL: with the account's basic auth, a redirect to the (unauthenticated) CDN copy, as Twilio
        answers; the CDN path serves the bytes."""
        found = _MEDIA_PATH.match(request.path)
        if found is not None:
            require(request.method == "GET", "media is fetched with GET")
            require(found["sid"] == self.account_sid, "media of another account")
            if not self._authorised(request):
                return Reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
            if found["me"] not in self.media:
                return Reply(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
            return Reply(302, None, headers={"Location": f"{self.base_url}/cdn/{found['me']}"})
        cdn = _CDN_PATH.match(request.path)
        if cdn is not None:
            with self._store_lock:
                item = self.media.get(cdn["me"])
            if item is None:
                return Reply(404, "not found")
            return Reply(200, item[1], headers={"Content-Type": item[0]})
        return None

    # ------------------------------------------------------------ the queue
    def release_queue(self) -> int:
        """Send every message still queued (status ``sent``, ``date_sent`` now).  Returns how many."""
        with self._store_lock:
            held = [m for m in self.messages if m.date_sent is None]
            for message in held:
                self._leave_queue(message)
        return len(held)

    @staticmethod
    def _leave_queue(message: SentMessage) -> None:
        message.status = "sent"
        message.date_sent = datetime.now(UTC).replace(microsecond=0)

    # ------------------------------------------------------------ scripted failures
    def fail_next(self, count: int, status: int, *, code: int | None = None, message: str = "fake failure") -> None:
        body = {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        self.script(Reply(status, body), times=count)

    def rate_limit_next(self, count: int = 1) -> None:
        self.fail_next(count, 429, code=20429, message="Too Many Requests")

    def server_error_next(self, count: int = 1) -> None:
        self.fail_next(count, 500, code=20500, message="Internal Server Error")

    def unsubscribed_next(self, count: int = 1) -> None:
        self.fail_next(count, 400, code=21610, message="Attempt to send to unsubscribed recipient")

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """Hold the next responses back; the client is expected to time out before they arrive."""
        self.script(Reply(500, {"code": 20500, "message": "late", "status": 500}, delay_s=seconds), times=count)

    def slow_next(self, seconds: float, count: int = 1) -> None:
        """The next ``count`` creates are accepted (the message exists) but answered ``seconds`` late."""
        with self._store_lock:
            self._slow_next.extend([seconds] * count)

    # ------------------------------------------------------------ behaviour
    def violation_reply(self, message: str) -> Reply:
        return Reply(400, {"code": 21000, "message": f"fake: {message}", "status": 400})

    def handle(self, request: RecordedRequest) -> Reply:
        media = self._media(request)
        if media is not None:
            return media
        match = _MESSAGES_PATH.match(request.path)
        if match is None:
            return Reply(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
        require(match["sid"] == self.account_sid, f"account sid in path {match['sid']!r} is not the configured one")
        if not self._authorised(request):
            return Reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
        if request.method == "POST":
            return self._create(request)
        if request.method == "GET":
            return self._list(request)
        return Reply(405, {"code": 20004, "message": "Method not allowed", "status": 405})

    def _authorised(self, request: RecordedRequest) -> bool:
        header = request.header("Authorization") or ""
        require(header.startswith("Basic "), "missing HTTP basic auth")
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user == self.account_sid and password == self.auth_token

    def _create(self, request: RecordedRequest) -> Reply:
        require(
            (request.header("Content-Type") or "").startswith("application/x-www-form-urlencoded"),
            "create must be form-encoded",
        )
        form = {k: v[-1] for k, v in request.form().items()}
        require(form.get("To"), "To is required")
        require(re.fullmatch(r"\+[1-9]\d{6,14}", form["To"]), "To must be E.164")
        require(form.get("Body"), "Body is required")
        require(form.get("From") or form.get("MessagingServiceSid"), "From or MessagingServiceSid is required")
        if form.get("MessagingServiceSid"):
            require(re.fullmatch(r"MG[0-9a-f]{32}", form["MessagingServiceSid"]), "bad MessagingServiceSid")
        if form.get("StatusCallback"):
            require(form["StatusCallback"].startswith(("http://", "https://")), "StatusCallback must be a URL")
        message = SentMessage(
            sid="SM" + secrets.token_hex(16),
            to=form["To"],
            from_=form.get("From"),
            messaging_service_sid=form.get("MessagingServiceSid"),
            body=form["Body"],
            status_callback=form.get("StatusCallback"),
            date_created=datetime.now(UTC).replace(microsecond=0),
            num_segments=count_segments(form["Body"]),
            status="accepted" if form.get("MessagingServiceSid") else "queued",
        )
        with self._store_lock:
            self.messages.append(message)
            created = self._resource(message)  # as the API answers a create: still queued, no date_sent
            if not self.hold_in_queue:
                self._leave_queue(message)  # leaves the queue right away (it is listed as sent from now on)
            delay = self._slow_next.popleft() if self._slow_next else self.latency_s
        return Reply(201, created, delay_s=delay)

    def _list(self, request: RecordedRequest) -> Reply:
        query = {k: v[-1] for k, v in request.query.items()}
        sent_on = _parse_twilio_date(query["DateSent"]).date() if "DateSent" in query else None
        sent_after = _parse_twilio_date(query["DateSent>"]) if "DateSent>" in query else None
        sent_before = _parse_twilio_date(query["DateSent<"]) if "DateSent<" in query else None
        page_size = int(query.get("PageSize", "50"))
        require(1 <= page_size <= 1000, "PageSize must be between 1 and 1000")
        page = int(query.get("Page", "0"))
        dated = sent_on is not None or sent_after is not None or sent_before is not None
        with self._store_lock:
            found = [
                m
                for m in reversed(self.messages)  # newest first, like Twilio
                if ("To" not in query or m.to == query["To"])
                and ("From" not in query or m.from_ == query["From"])
                # Every DateSent filter is on the sent date: a message still queued has none and never matches.
                and not (dated and m.date_sent is None)
                and (sent_on is None or (m.date_sent is not None and m.date_sent.date() == sent_on))
                and (sent_after is None or (m.date_sent is not None and m.date_sent >= sent_after))
                and (sent_before is None or (m.date_sent is not None and m.date_sent <= sent_before))
            ]
            start = page * page_size
            shown = [self._resource(m) for m in found[start : start + page_size]]
        uri = request.path
        filters = "".join(
            f"&{key}={quote(query[key])}"
            for key in ("To", "From", "DateSent", "DateSent<", "DateSent>")
            if key in query
        )

        def page_uri(number: int) -> str:
            return f"{uri}?PageSize={page_size}&Page={number}{filters}"

        more = start + page_size < len(found)
        payload = {
            "messages": shown,
            "end": start + max(len(shown) - 1, 0),
            "first_page_uri": page_uri(0),
            "next_page_uri": page_uri(page + 1) + f"&PageToken=PA{secrets.token_hex(8)}" if more else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            "start": start,
            "uri": page_uri(page),
        }
        return Reply(200, payload)

    def _resource(self, message: SentMessage) -> dict[str, Any]:
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": message.body,
            "date_created": _rfc2822(message.date_created),
            "date_sent": _rfc2822(message.date_sent) if message.date_sent is not None else None,
            "date_updated": _rfc2822(message.date_sent or message.date_created),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": message.from_,
            "messaging_service_sid": message.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(message.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": message.sid,
            "status": message.status,
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{message.sid}/Media.json"},
            "to": message.to,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{message.sid}.json",
        }


def _parse_twilio_date(text: str) -> datetime:
    if len(text) == 10:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
