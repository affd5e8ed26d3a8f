"""SmsSender backed by Twilio's Messages API through the official ``twilio`` SDK.

One attempt per ``send``: the outbox actor owns retries (with backoff and a
give-up path), so this adapter only classifies failures as retryable or not
and keeps every call inside an explicit timeout.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from domain.ports import OutboundSms, SmsSendError, SmsSendResult
from worker.integrations.http_pools import size_session

log = logging.getLogger(__name__)

# Twilio error codes that mean "this recipient can't get this message" — retrying won't help.
UNSUBSCRIBED = "21610"
INVALID_TO = "21211"
NOT_MOBILE = "21614"
_RATE_LIMITED_CODES = {"20429", "14107"}
# Reconciliation looks at the recipient's newest messages (one page): the message it looks for was created
# minutes ago, and a patient does not get hundreds of texts from one clinic in minutes.
RECONCILE_LIMIT = 200
# A message Twilio has in any other status (queued, sending, sent, delivered, failed, ...) is ours already; a
# canceled one (a scheduled message withdrawn before it left) never went out.
_NOT_SENT_STATUSES = frozenset({"canceled"})


def rewrite_twilio_url(url: str, override: SplitResult | None) -> str:
    """A ``*.twilio.com`` URL moved to ``override``'s base (a local fake in tests), path and query kept."""
    if override is None:
        return url
    parts = urlsplit(url)
    if parts.hostname and parts.hostname.endswith("twilio.com"):
        prefix = override.path.rstrip("/")
        return urlunsplit((override.scheme, override.netloc, prefix + parts.path, parts.query, parts.fragment))
    return url


class _QuietTwilioHttpClient(TwilioHttpClient):
    """The SDK's own HTTP client, with two changes.

    - Requests to ``*.twilio.com`` can be rewritten to another base URL (a
      local fake in tests, a proxy in odd deployments); the SDK still builds
      the request — form fields, basic auth — so the wire format is real.
    - Its request logging is replaced: the stock client logs query params at
      INFO, and for a message list those are phone numbers (PHI).
    - Its session keeps one connection per sending thread
      (``worker/integrations/http_pools.py``), not the SDK's ``cores + 4``.
    """

    def __init__(self, *, timeout: float, base_url_override: str | None, connections: int | None) -> None:
        super().__init__(timeout=timeout, logger=log)
        self._override = urlsplit(base_url_override) if base_url_override else None
        if connections and self.session is not None:
            size_session(self.session, connections)

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        url = rewrite_twilio_url(url, self._override)
        return super().request(method, url, params, data, headers, auth, timeout, allow_redirects)

    def log_request(self, kwargs: dict[str, Any]) -> None:
        log.debug("twilio request %s %s", kwargs["method"], urlsplit(kwargs["url"]).path)

    def log_response(self, status_code: int, response: Any) -> None:
        log.debug("twilio response %s", status_code)


class TwilioSmsSender:
    """Sends one SMS per call via ``messages.create``; see module docstring for retry policy."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url_override: str | None = None,
        messaging_service_sid: str | None = None,
        timeout: float = 10,
        connections: int | None = None,
    ) -> None:
        """``connections``: idle connections to keep (one per thread that sends); None keeps the SDK's pool."""
        self._messaging_service_sid = messaging_service_sid
        self._client = Client(
            account_sid,
            auth_token,
            http_client=_QuietTwilioHttpClient(
                timeout=timeout, base_url_override=base_url_override, connections=connections
            ),
        )

    def send(self, message: OutboundSms) -> SmsSendResult:
        params: dict[str, Any] = {"to": message.to, "body": message.body}
        service_sid = message.messaging_service_sid or self._messaging_service_sid
        if service_sid:
            params["messaging_service_sid"] = service_sid
        else:
            params["from_"] = message.from_
        if message.status_callback_url:
            params["status_callback"] = message.status_callback_url
        try:
            created = self._client.messages.create(**params)
        except Exception as exc:
            raise _classify(exc, outbox_id=message.outbox_id) from exc
        return SmsSendResult(
            provider_message_id=str(created.sid),
            status=str(created.status or "queued"),
            segments=_int_or(created.num_segments, 1),
        )

    def find_sent(self, message: OutboundSms, since: datetime) -> str | None:
        """Look for ``message`` among the messages Twilio has for its recipient, created since ``since``.

        Used before re-sending a row whose send outcome was never recorded (a crash or timeout between the
        API call and the commit): if Twilio already has it, don't send twice.  Twilio's list filters by date
        only on the *sent* date (``DateSent``), which a message still waiting in Twilio's queue (``accepted``,
        ``scheduled``, ``queued``, ``sending``) does not have yet — filtering on it would miss exactly the
        messages a brown-out leaves queued.  So the list is filtered by recipient (and sender, unless a
        Messaging Service picks it), newest first, and ``date_created`` is compared here.
        """
        since_utc = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        via_service = bool(message.messaging_service_sid or self._messaging_service_sid)
        filters: dict[str, Any] = {"to": message.to}
        if not via_service:
            filters["from_"] = message.from_
        try:
            found = self._client.messages.list(**filters, limit=RECONCILE_LIMIT, page_size=RECONCILE_LIMIT)
        except Exception as exc:
            raise _classify(exc, outbox_id=message.outbox_id) from exc
        for candidate in found:
            if candidate.body != message.body or str(candidate.status or "") in _NOT_SENT_STATUSES:
                continue
            if not str(candidate.direction or "outbound").startswith("outbound"):
                continue  # the patient's own text with the same words
            created = candidate.date_created or candidate.date_sent
            if created is not None and created < since_utc:
                continue
            if not via_service and candidate.from_ not in (None, message.from_):
                continue
            return str(candidate.sid)
        return None


def _int_or(value: object, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def _classify(exc: Exception, *, outbox_id: int) -> SmsSendError:
    """Map an SDK/transport exception to SmsSendError (logged without PHI)."""
    if isinstance(exc, TwilioRestException | TwilioServiceException):
        code = str(exc.code) if exc.code is not None else None
        status = int(exc.status)
        retryable = status == 429 or status >= 500 or code in _RATE_LIMITED_CODES
        log.warning("twilio error outbox_id=%s status=%s code=%s retryable=%s", outbox_id, status, code, retryable)
        return SmsSendError(f"twilio HTTP {status} code {code}", code=code, retryable=retryable)
    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        log.warning("twilio transport error outbox_id=%s kind=%s", outbox_id, type(exc).__name__)
        return SmsSendError(f"twilio unreachable: {type(exc).__name__}", retryable=True)
    if isinstance(exc, requests.RequestException | TwilioException):
        log.warning("twilio client error outbox_id=%s kind=%s", outbox_id, type(exc).__name__)
        return SmsSendError(f"twilio client error: {type(exc).__name__}", retryable=False)
    raise exc
