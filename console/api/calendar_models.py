"""What the calendar write endpoints (``console/api/calendar_write.py``) take and answer: the request bodies of
book, move, cancel and block, and the appointment they answer with (the visit endpoints, ``visits.py``, answer
with it too)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from console.api.framework import ApiModel

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
MAX_BLOCK = timedelta(days=31)
BY = "staff-console"  # kept on a patient's text: where the change was made


class BookIn(ApiModel):
    client_id: int = Field(ge=1)
    service_id: int = Field(ge=1)
    starts_at: AwareDatetime = Field(description="the start, ISO 8601 with its offset, e.g. 2031-03-04T10:00:00-08:00")
    provider_id: int | None = Field(
        default=None, ge=1, description="default: the first qualified provider free then (a provider: themself)"
    )
    notes: str = Field(default="", max_length=2000, description="a note for staff, kept on the appointment")
    text_patient: bool = Field(
        default=False, description="text the patient a confirmation, once (as `medspa appointments book --text`)"
    )


class MoveIn(ApiModel):
    starts_at: AwareDatetime = Field(description="the new start (same length and buffer), ISO 8601 with its offset")
    provider_id: int | None = Field(default=None, ge=1, description="another provider (default: the same one)")
    text_patient: bool = Field(
        default=True, description="text the patient the new time, once (as `medspa appointments move` does)"
    )


class CancelIn(ApiModel):
    reason: Reason = Field(description="why (kept on the appointment)")
    text_patient: bool = Field(
        default=True,
        description="text the patient the cancellation and what happens to a paid deposit, once (as `medspa "
        "appointments cancel` does)",
    )


class BlockIn(ApiModel):
    provider_id: int = Field(ge=1)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: Reason = Field(description="why, shown to staff (training, leave)")


class AppointmentOut(BaseModel):
    id: int
    kind: str
    status: str
    provider_id: int
    client_id: int | None
    service_id: int | None
    starts_at: datetime
    ends_at: datetime
    deposit_cents: int
    hold_expires_at: datetime | None
    amount_charged_cents: int | None
    changed: bool = Field(description="false when this repeated an earlier request and nothing changed")
    follow_ups: list[str] = Field(default_factory=list, description="work handed to the workers after the commit")
    notes: list[str] = Field(default_factory=list)
    outbox_ids: list[int] = Field(default_factory=list, description="the patient's text, queued (sent by the workers)")


class CancellationOut(AppointmentOut):
    late: bool = Field(description="inside the clinic's cancellation window")
    fee_cents: int = Field(
        description="the late fee due per policy, less a kept deposit (not charged by a cancellation)"
    )
    deposit_action: str = Field(description="none (no deposit paid) | keep | refund, by the clinic's policy")
