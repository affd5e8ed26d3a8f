"""Fast unique ids for hot paths (trace ids, queue message ids).

``uuid.uuid4()`` reads the kernel's random source on every call; in this
sandboxed runtime each of those syscalls costs a quarter of a millisecond, more
than the rest of a webhook request.  These ids need uniqueness, not secrecy, so
a per-process generator seeded once from the OS (and re-seeded in forked
children, so worker processes never share a sequence) does the job.
"""

from __future__ import annotations

import os
import random
import uuid

_random = random.Random(os.urandom(32))


def _reseed() -> None:
    _random.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def fast_hex() -> str:
    """32 hex characters."""
    return f"{_random.getrandbits(128):032x}"


def fast_uuid() -> str:
    """A random (version 4 layout) UUID string."""
    return str(uuid.UUID(int=_random.getrandbits(128), version=4))


def fast_int63() -> int:
    """A random positive 63-bit integer (fits a Postgres ``bigint``): tokens such as an outbox claim's."""
    return _random.getrandbits(63)
