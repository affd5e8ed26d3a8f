"""Test patients' phone numbers: one home, so no two tests draw from the same small pool."""

from __future__ import annotations

import uuid


def random_phone(area: str = "415") -> str:
    """A valid NANP mobile-looking number in ``area``, drawn from 8 million (exchanges 200-999): two patients of
    one test session practically never share one (pools of 10,000 per test file collided now and then)."""
    return f"+1{area}{2_000_000 + uuid.uuid4().int % 8_000_000}"
