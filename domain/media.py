"""Photos patients text (MMS): what is kept, what the agent says, what the model may see.

Rules, pure:
- every inbound photo is recorded and stored for staff (``worker/media.py``); only the image types a phone sends
  are kept, up to a size limit, and only from the provider's own media URLs;
- the model never sees a photo unless the clinic turned on a vision model (``policies.vision_model``, off by
  default) — it reads the words of the message only; with it on, the turn's photos go along as image parts
  (``worker.media.images_for_model``) and the model answers words and photo together;
- the agent acknowledges a photo in words (a photo with no text needs no model at all);
- a photo with worrying words is an adverse-reaction report (``domain.safety.photo_concern``): the safety reply
  and an urgent staff handoff (``domain.agent_loop.safety_turn(photo=True)``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from domain.segments import to_gsm_friendly

MAX_MEDIA_PER_MESSAGE = 10  # Twilio's own limit on one MMS
# What we store: images (HEIC from iPhones included); anything else is recorded and refused.
STORABLE_TYPES = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/heic": ".heic",
    "image/heif": ".heif",
}
PENDING = "pending"
STORED = "stored"
FAILED = "failed"  # the fetch failed for good (not found, too large, not an image, not a provider URL)
MEDIA_STATUSES = (PENDING, STORED, FAILED)
_TWILIO_MEDIA_PATH = re.compile(
    r"^/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Messages/[A-Za-z0-9]{2,64}/Media/[A-Za-z0-9]{2,64}$"
)


def storable_type(content_type: str | None) -> str | None:
    """The file extension for a content type we keep, or None."""
    return STORABLE_TYPES.get((content_type or "").split(";")[0].strip().lower())


def twilio_media_account(path: str) -> str | None:
    """The account SID in a Twilio media URL's path, or None when the path is not one."""
    match = _TWILIO_MEDIA_PATH.match(path)
    return match.group(1) if match else None


# What a vision model is shown (the common web formats; HEIC is kept for staff but not sent) and how many per turn.
VISION_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
MAX_IMAGES_PER_TURN = 3


def vision_enabled(policies: Mapping[str, Any] | None) -> bool:
    """Does the clinic send patients' photos to a vision model?  Off unless the clinic says ``vision_model: true``."""
    return (policies or {}).get("vision_model") is True


def photo_ack(clinic_name: str, count: int) -> str:
    """What the agent says when a patient sends photos (no model needed)."""
    what = "photo" if count == 1 else "photos"
    return to_gsm_friendly(
        f"Thanks, we got your {what} and saved it to your file for the {clinic_name} team to review. "
        "If anything looks or feels wrong, tell us what's going on."
    )


def photo_safety_reply(safety_reply: str) -> str:
    """The safety reply for a photo that reports a reaction: the photo acknowledged first."""
    return to_gsm_friendly("Thanks for the photo - our team will review it. ") + safety_reply
