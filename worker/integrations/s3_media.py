"""MediaStore on S3-compatible object storage (AWS S3, MinIO, Cloudflare R2, Backblaze B2, …) without boto3.

Two calls are all the store needs — PUT and GET of one object — so they are made with ``requests`` (already a
dependency, through the Twilio SDK) and signed with AWS Signature Version 4 here (``sigv4_authorization``; the
signing is checked against AWS's published example in ``tests/unit/test_s3_signing.py``).  Path-style URLs
(``{endpoint}/{bucket}/{key}``), which every S3-compatible server accepts.  The payload is hashed and signed
(no ``UNSIGNED-PAYLOAD``); objects are written with ``Content-Type`` and read back as bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import requests

from medspa.secrets import media_storage_problem
from medspa.settings import ConfigurationError, Settings
from worker.integrations.media_storage import check_key

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def sigv4_authorization(
    method: str,
    url: str,
    headers: Mapping[str, str],
    *,
    payload_sha256: str,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    now: datetime,
    service: str = "s3",
) -> str:
    """The ``Authorization`` header of an AWS SigV4 request.  ``headers`` are the headers to sign (``host`` and
    ``x-amz-date`` / ``x-amz-content-sha256`` included, as sent); the URL's path is already URI-encoded."""
    parts = urlsplit(url)
    query = "&".join(
        sorted(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
            for k, _, v in (pair.partition("=") for pair in parts.query.split("&") if pair)
        )
    )
    signed = {name.lower(): " ".join(str(value).split()) for name, value in headers.items()}
    names = sorted(signed)
    canonical = "\n".join(
        [
            method.upper(),
            parts.path or "/",
            query,
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            payload_sha256,
        ]
    )
    stamp = now.astimezone(UTC)
    day = stamp.strftime("%Y%m%d")
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            stamp.strftime("%Y%m%dT%H%M%SZ"),
            scope,
            hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        ]
    )
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret_access_key).encode("utf-8"), day), region), service), "aws4_request")
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return (
        f"AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    )


class S3MediaStore:
    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        prefix: str = "",
        timeout: float = 20,
    ) -> None:
        self.bucket = bucket
        self.endpoint = endpoint_url.rstrip("/")
        self.region = region
        self._access_key_id = access_key_id
        self._secret = secret_access_key
        self.prefix = prefix
        self._timeout = timeout
        self._session = requests.Session()

    @classmethod
    def from_settings(cls, settings: Settings) -> S3MediaStore:
        """Fails closed: MEDIA_STORAGE=s3 without its bucket, endpoint or keys is a start-up error."""
        problem = media_storage_problem(settings)  # also checked at every process's start-up (medspa.secrets)
        if problem:
            raise ConfigurationError(problem)
        secret = settings.media_s3_secret_access_key.get_secret_value() if settings.media_s3_secret_access_key else ""
        return cls(
            bucket=str(settings.media_s3_bucket),
            endpoint_url=str(settings.media_s3_endpoint_url),
            region=settings.media_s3_region,
            access_key_id=str(settings.media_s3_access_key_id),
            secret_access_key=secret,
            prefix=settings.media_s3_prefix,
            timeout=settings.media_fetch_timeout_s,
        )

    def _object_url(self, key: str) -> str:
        path = quote(f"/{self.bucket}/{self.prefix}{check_key(key)}", safe="/-_.~")
        return self.endpoint + path

    def _signed(self, method: str, url: str, payload_sha256: str, extra: Mapping[str, str]) -> dict[str, str]:
        now = datetime.now(UTC)
        headers = {
            "host": urlsplit(url).netloc,
            "x-amz-content-sha256": payload_sha256,
            "x-amz-date": now.strftime("%Y%m%dT%H%M%SZ"),
            **{k.lower(): v for k, v in extra.items()},
        }
        headers["authorization"] = sigv4_authorization(
            method,
            url,
            headers,
            payload_sha256=payload_sha256,
            access_key_id=self._access_key_id,
            secret_access_key=self._secret,
            region=self.region,
            now=now,
        )
        return headers

    def put(self, key: str, data: bytes, content_type: str) -> None:
        url = self._object_url(key)
        headers = self._signed("PUT", url, hashlib.sha256(data).hexdigest(), {"content-type": content_type})
        response = self._session.put(url, data=data, headers=headers, timeout=self._timeout)
        if response.status_code not in (200, 201, 204):
            raise RuntimeError(f"S3 PUT failed: HTTP {response.status_code}")

    def get(self, key: str) -> bytes:
        url = self._object_url(key)
        response = self._session.get(url, headers=self._signed("GET", url, EMPTY_SHA256, {}), timeout=self._timeout)
        if response.status_code == 404:
            raise KeyError(key)
        if response.status_code != 200:
            raise RuntimeError(f"S3 GET failed: HTTP {response.status_code}")
        return response.content

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{check_key(key)}"
