"""Actors for payment_actors (see module body)."""

from __future__ import annotations
