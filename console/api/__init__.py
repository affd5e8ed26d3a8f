"""The JSON API under /api/v1: framework (``framework.py``), the endpoints by feature, the OpenAPI document."""

from __future__ import annotations

from console.api.framework import ENDPOINTS, EndpointSpec


def endpoints() -> list[EndpointSpec]:
    """Every endpoint (importing the feature modules registers theirs)."""
    from console.api import (  # noqa: F401
        admin,
        calendar_write,
        campaigns,
        clients,
        content,
        conversations,
        conversations_write,
        knowledge,
        me,
        notifications,
        schedule,
        settings,
        staff,
        visits,
    )

    return ENDPOINTS
