"""MediaStore adapters: a local folder (the default) and S3-compatible object storage.

Keys are ``{clinic_id}/{conversation_id}/{media_id}{ext}`` (``worker/media.py``): no patient data in a path.  The
local store writes through a temporary file and an atomic rename, so a reader never sees half a photo; files are
created readable by their owner only (they are patients' photos).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from domain.ports import MediaStore
from medspa.settings import ConfigurationError, Settings

_KEY = re.compile(r"^[0-9]+/[0-9]+/[0-9]+(?:\.[a-z0-9]{1,5})?$")


def check_key(key: str) -> str:
    """Keys are ours (digits and an extension): anything else — ``..``, absolute paths — is refused."""
    if not _KEY.match(key):
        raise ValueError("not a media key")
    return key


class LocalMediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def location(self, key: str) -> str:
        return str(self._path(key))


def build_media_store(settings: Settings) -> MediaStore:
    """The media store the settings name (MEDIA_STORAGE): local (default) or s3."""
    backend = settings.media_storage.strip().lower()
    if backend == "local":
        return LocalMediaStore(settings.media_dir)
    if backend == "s3":
        from worker.integrations.s3_media import S3MediaStore

        return S3MediaStore.from_settings(settings)
    raise ConfigurationError(f"MEDIA_STORAGE must be local or s3, not {settings.media_storage!r}")
