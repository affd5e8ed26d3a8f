"""Handoff notification settings (owners): the on-call staff numbers and addresses that hear about every handoff,
staff quiet hours, the batching window; and the notifications sent lately.  The rules are
``domain/handoff_notify.py``'s; the table belongs to ``worker/handoff_notify.py``."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from console.api.framework import ApiCall, ApiModel, api
from domain.staff_access import Permission
from worker import handoff_notify

_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class NotificationSettingsIn(ApiModel):
    sms_numbers: list[str] = Field(
        default_factory=list, max_length=10, description="on-call staff numbers, E.164 (+14155550100)"
    )
    emails: list[str] = Field(default_factory=list, max_length=10, description="on-call staff addresses")
    quiet_hours: str | None = Field(
        default=None,
        max_length=11,
        description='staff quiet hours, clinic-local "HH:MM-HH:MM"; "" for none; null for the default',
    )
    batch_window_s: int | None = Field(
        default=None, ge=0, le=3600, description="handoffs within this many seconds go out as one notification"
    )

    @field_validator("sms_numbers")
    @classmethod
    def _numbers(cls, value: list[str]) -> list[str]:
        bad = [n for n in value if not _E164.match(n)]
        if bad:
            raise ValueError("not E.164 phone numbers (like +14155550100): " + ", ".join(bad))
        return list(dict.fromkeys(value))

    @field_validator("emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        bad = [e for e in value if not _EMAIL.match(e) or len(e) > 254]
        if bad:
            raise ValueError("not email addresses: " + ", ".join(bad))
        return list(dict.fromkeys(e.lower() for e in value))

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        if value:
            handoff_notify.parse_quiet_hours(value)  # ValueError: a clear message
        return value


class RecentNotification(BaseModel):
    id: int
    alerts: int
    urgent: bool
    created_at: datetime
    texts: int
    email_status: str


class NotificationSettingsOut(BaseModel):
    sms_numbers: list[str]
    emails: list[str]
    quiet_hours: str | None
    batch_window_s: int | None
    default_quiet_hours: str
    default_batch_window_s: int
    recent: list[RecentNotification]


def load_settings(call: ApiCall) -> NotificationSettingsOut:
    stored = handoff_notify.read_settings(call.session, call.clinic.clinic_id)
    settings = call.runtime.settings
    return NotificationSettingsOut(
        sms_numbers=stored.sms_numbers,
        emails=stored.emails,
        quiet_hours=stored.quiet_hours,
        batch_window_s=stored.batch_window_s,
        default_quiet_hours=settings.handoff_notify_quiet_hours,
        default_batch_window_s=settings.handoff_notify_batch_s,
        recent=[RecentNotification.model_validate(r) for r in handoff_notify.recent_notifications(call.session)],
    )


@api(
    "GET",
    "/clinics/{clinic_id:int}/notification-settings",
    summary="Who hears about handoffs, staff quiet hours and the batching window (owners only)",
    tag="notifications",
    permission=Permission.SETTINGS_MANAGE,
    response=NotificationSettingsOut,
)
def get_notification_settings(call: ApiCall) -> NotificationSettingsOut:
    return load_settings(call)


@api(
    "PUT",
    "/clinics/{clinic_id:int}/notification-settings",
    summary="Set who hears about handoffs, staff quiet hours and the batching window (owners only; audited)",
    tag="notifications",
    permission=Permission.SETTINGS_MANAGE,
    body=NotificationSettingsIn,
    response=NotificationSettingsOut,
)
def put_notification_settings(call: ApiCall) -> NotificationSettingsOut:
    """Without on-call numbers the clinic's on-call phone (clinic file: phone_numbers.on_call) is texted."""
    return save_settings(call, call.body)


def save_settings(call: ApiCall, body: NotificationSettingsIn) -> NotificationSettingsOut:
    stored = handoff_notify.StoredSettings(body.sms_numbers, body.emails, body.quiet_hours, body.batch_window_s)
    handoff_notify.save_settings(call.session, call.clinic.clinic_id, stored)
    call.audit(
        "notification_settings.updated",
        target_type="clinic",
        target_id=call.clinic.clinic_id,
        detail={
            "sms_numbers": len(body.sms_numbers),
            "emails": len(body.emails),
            "quiet_hours": body.quiet_hours,
            "batch_window_s": body.batch_window_s,
        },
    )
    return load_settings(call)
