"""Edge validation: what Postgres would refuse never reaches a (shared) insert batch.

Postgres ``text`` cannot hold NUL (U+0000), ``jsonb`` refuses the ``\\u0000`` escape and unpaired UTF-16
surrogates (which JSON can spell, ``"\\ud800"``, and Python then holds as lone surrogates that do not even
encode to UTF-8).  Inbound rows of concurrent requests are inserted together, so such a character in one
request would fail its batch: every route rejects it up front with a 400 for that request alone.  (The inbox
writer also isolates a failing row — ``webhooks.inbox`` — so anything this misses still fails only its own
request.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# NUL, and any surrogate code point (a valid pair never survives decoding as two code points in Python).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: object) -> bool:
    """True when every string in ``value`` (nested dicts and lists, keys included) Postgres can store."""
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is None
    if isinstance(value, Mapping):
        return all(storable(k) and storable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(storable(item) for item in value)
    return True


def unstorable_field(fields: Mapping[str, object]) -> str | None:
    """The name of the first field holding a character Postgres refuses, or None."""
    for name, value in fields.items():
        if not storable(name) or not storable(value):
            return name if storable(name) else "a field name"
    return None


def too_long_field(fields: Mapping[str, object], limits: Mapping[str, int]) -> str | None:
    """The name of the first field longer than its limit (columns with a length: ids, sender keys), or None."""
    for name, limit in limits.items():
        value = fields.get(name)
        if isinstance(value, str) and len(value) > limit:
            return name
    return None


UNSTORABLE_MESSAGE = "contains a character that cannot be stored (NUL or an unpaired surrogate)"
