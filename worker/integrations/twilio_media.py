"""MediaFetcher for Twilio: the media of an inbound MMS, fetched with the account's credentials.

Only Twilio's own media URLs of the configured account are fetched (``https://api.twilio.com/2010-04-01/Accounts/
{our sid}/Messages/…/Media/…``): the URL arrives in a webhook form, and the credentials must never go anywhere
else.  Twilio answers with a redirect to its media CDN; ``requests`` drops the Authorization header when a
redirect leaves the host, so the credentials stay with Twilio.  The body is read up to the size limit and no
further.  Requests to ``*.twilio.com`` go to ``TWILIO_API_BASE`` when set (a local fake in tests), like the SMS
adapter's.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import requests

from domain.media import twilio_media_account
from domain.ports import FetchedMedia, MediaFetchError
from worker.integrations.twilio_sms import rewrite_twilio_url

log = logging.getLogger(__name__)
_CHUNK = 64 * 1024


class TwilioMediaFetcher:
    def __init__(
        self, account_sid: str, auth_token: str, *, base_url_override: str | None = None, timeout: float = 20
    ) -> None:
        self._sid = account_sid
        self._auth = (account_sid, auth_token)
        self._override = urlsplit(base_url_override) if base_url_override else None
        self._timeout = timeout
        self._session = requests.Session()

    def fetch(self, url: str, *, max_bytes: int) -> FetchedMedia:
        parts = urlsplit(url)
        if (
            parts.scheme != "https"
            or parts.hostname != "api.twilio.com"
            or twilio_media_account(parts.path) != self._sid
            or parts.query
        ):
            raise MediaFetchError("not a media URL of this Twilio account", retryable=False)
        try:
            with self._session.get(
                rewrite_twilio_url(url, self._override),
                auth=self._auth,
                timeout=self._timeout,
                allow_redirects=True,
                stream=True,
            ) as response:
                status = response.status_code
                if status == 429 or status >= 500:
                    raise MediaFetchError(f"twilio media HTTP {status}", retryable=True)
                if status != 200:
                    raise MediaFetchError(f"twilio media HTTP {status}", retryable=False)
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise MediaFetchError("media larger than the limit", retryable=False)
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_content(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaFetchError("media larger than the limit", retryable=False)
                    chunks.append(chunk)
                content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise MediaFetchError(f"twilio media unreachable: {type(exc).__name__}", retryable=True) from exc
        except requests.RequestException as exc:
            raise MediaFetchError(f"twilio media client error: {type(exc).__name__}", retryable=False) from exc
        return FetchedMedia(b"".join(chunks), content_type)

    def close(self) -> None:
        self._session.close()
