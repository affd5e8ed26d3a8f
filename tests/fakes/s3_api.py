"""Local stand-in for an S3-compatible object store (path-style PUT/GET of one object), checked at the wire.

It recomputes each request's AWS Signature Version 4 from the credentials it was given (the signing itself is
pinned to AWS's published example in tests/unit/test_s3_signing.py) and checks the signed payload hash against the
body, as S3 does; unsigned or wrongly signed requests get S3's 403.
"""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import UTC, datetime

from tests.fakes.http import FakeHttpServer, RecordedRequest, Reply, require
from worker.integrations.s3_media import sigv4_authorization

_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<scope>[^,]+), SignedHeaders=(?P<names>[^,]+), ")


class FakeS3Api(FakeHttpServer):
    def __init__(self, bucket: str, access_key_id: str, secret_access_key: str, region: str = "us-east-1") -> None:
        super().__init__()
        self.bucket = bucket
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.region = region
        self.objects: dict[str, tuple[str, bytes]] = {}  # key -> (content type, bytes)
        self._objects_lock = threading.Lock()

    def handle(self, request: RecordedRequest) -> Reply:
        prefix = f"/{self.bucket}/"
        require(request.path.startswith(prefix), "path-style URL of the configured bucket")
        if not self._signed(request):
            return Reply(403, "<Error><Code>SignatureDoesNotMatch</Code></Error>")
        key = request.path[len(prefix) :]
        if request.method == "PUT":
            with self._objects_lock:
                self.objects[key] = (request.header("content-type") or "binary/octet-stream", request.body)
            return Reply(200, b"")
        if request.method == "GET":
            with self._objects_lock:
                found = self.objects.get(key)
            if found is None:
                return Reply(404, "<Error><Code>NoSuchKey</Code></Error>")
            return Reply(200, found[1], headers={"Content-Type": found[0]})
        return Reply(405, "<Error><Code>MethodNotAllowed</Code></Error>")

    def _signed(self, request: RecordedRequest) -> bool:
        match = _AUTH.match(request.header("authorization") or "")
        payload = request.header("x-amz-content-sha256") or ""
        if match is None or match["key"] != self.access_key_id or payload != hashlib.sha256(request.body).hexdigest():
            return False
        names = match["names"].split(";")
        require({"host", "x-amz-date", "x-amz-content-sha256"} <= set(names), "host and x-amz-* headers are signed")
        when = datetime.strptime(request.header("x-amz-date") or "", "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        expected = sigv4_authorization(
            request.method,
            self.base_url + request.path,
            {name: request.header(name) or "" for name in names},
            payload_sha256=payload,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region=self.region,
            now=when,
        )
        return expected == request.header("authorization")
