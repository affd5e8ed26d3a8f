"""Actors for automation_actors (see module body)."""

from __future__ import annotations
