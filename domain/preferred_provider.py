"""Preferred provider: the patient's last provider is offered first.

Why: patients mostly want the injector they saw last time.  The provider of the patient's last attended visit
(completed) is remembered from the appointments themselves; when slots are offered and the patient did not ask
for anyone, that provider's slots come first, then everyone else's.  A patient who names a provider gets that
provider (nothing is preferred); the preference only orders, it never hides anyone.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")


def preferred_provider(last_seen: int | None, asked_for: int | None, qualified: frozenset[int]) -> int | None:
    """The provider to offer first: the one seen last, if they do the service and the patient asked for nobody."""
    if asked_for is not None or last_seen is None or last_seen not in qualified:
        return None
    return last_seen


def merge_preferred(
    preferred_slots: Sequence[T],
    other_slots: Sequence[T],
    limit: int,
    key: Callable[[T], Hashable],
) -> list[T]:
    """The preferred provider's slots first, then the others (no slot twice), at most ``limit``.  At least one
    place is left for someone else when there is someone else (the patient sees there is a choice)."""
    if not preferred_slots:
        return list(other_slots[:limit])
    seen = {key(s) for s in preferred_slots}
    others = [s for s in other_slots if key(s) not in seen]
    room_for_mine = limit - 1 if others else limit
    mine = list(preferred_slots[: max(1, room_for_mine)])
    return (mine + others)[:limit]
