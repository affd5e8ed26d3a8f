"""Who on the staff may see and do what: roles, permissions, and how far a role's view of patients reaches.

The one home of these rules: the console's API and pages, its token minting and its CLI all ask here.  Pure.

- ``owner``: everything, and only owners manage staff, clinic settings and campaigns, read the audit log and
  mint API tokens;
- ``manager``: runs the front of house, keeps the knowledge base, and reads automations and campaign reports,
  but changes neither;
- ``front_desk``: patients, conversations (reading them, taking over, replying, handing back), the calendar
  (reading and changing it: book, move, cancel, block time, check in, complete, no-show), the catalogue and the
  knowledge base;
- ``provider``: their own schedule and their own patients (those with an appointment with them) — changing only
  their own appointments and time — the catalogue and the knowledge base.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class StaffRole(StrEnum):
    OWNER = "owner"
    MANAGER = "manager"
    FRONT_DESK = "front_desk"
    PROVIDER = "provider"


class Permission(StrEnum):
    """Also the scopes an API access token may carry (a token never holds more than its user's role)."""

    CLIENTS_READ = "clients:read"
    CONVERSATIONS_READ = "conversations:read"
    CONVERSATIONS_WRITE = "conversations:write"  # take over, reply as staff, hand back
    APPOINTMENTS_READ = "appointments:read"
    SCHEDULE_WRITE = "schedule:write"  # book, move, cancel, block time, check in, complete, no-show
    CATALOG_READ = "catalog:read"
    KB_READ = "kb:read"
    KB_MANAGE = "kb:manage"
    AUTOMATIONS_READ = "automations:read"
    CAMPAIGNS_READ = "campaigns:read"
    AUDIT_READ = "audit:read"
    STAFF_MANAGE = "staff:manage"
    SETTINGS_MANAGE = "settings:manage"
    CAMPAIGNS_MANAGE = "campaigns:manage"
    TOKENS_MINT = "tokens:mint"


# What the front desk looks at first: handoffs, most urgent first (``domain.tools.Urgency`` values).
HANDOFF_URGENCY_ORDER = ("emergency", "urgent", "normal", "low")


class PatientReach(StrEnum):
    """Which patients (and their conversations and appointments) a role sees within its clinic."""

    CLINIC = "clinic"  # every patient of the clinic
    OWN = "own"  # only patients with an appointment with the user's provider row; only that provider's schedule


_FRONT_DESK = frozenset(
    {
        Permission.CLIENTS_READ,
        Permission.CONVERSATIONS_READ,
        Permission.CONVERSATIONS_WRITE,
        Permission.APPOINTMENTS_READ,
        Permission.SCHEDULE_WRITE,
        Permission.CATALOG_READ,
        Permission.KB_READ,
    }
)
_MANAGER = _FRONT_DESK | {Permission.AUTOMATIONS_READ, Permission.CAMPAIGNS_READ, Permission.KB_MANAGE}

ROLE_PERMISSIONS: dict[StaffRole, frozenset[Permission]] = {
    StaffRole.OWNER: frozenset(Permission),
    StaffRole.MANAGER: frozenset(_MANAGER),
    StaffRole.FRONT_DESK: _FRONT_DESK,
    StaffRole.PROVIDER: _FRONT_DESK,  # narrowed to their own patients and schedule by ``patient_reach``
}


def permissions_of(role: StaffRole) -> frozenset[Permission]:
    return ROLE_PERMISSIONS[role]


def patient_reach(role: StaffRole) -> PatientReach:
    return PatientReach.OWN if role == StaffRole.PROVIDER else PatientReach.CLINIC


def effective_permissions(role: StaffRole, token_scopes: Iterable[str] | None) -> frozenset[Permission]:
    """A browser session has its role's permissions; an API token has the scopes it was minted with, cut down
    to what the role allows *now* (a demoted user's old tokens lose what the new role lacks)."""
    allowed = permissions_of(role)
    if token_scopes is None:
        return allowed
    granted = {Permission(s) for s in token_scopes if s in Permission._value2member_map_}
    return frozenset(granted) & allowed


def parse_scopes(requested: Iterable[str], role: StaffRole) -> tuple[frozenset[Permission], list[str]]:
    """The scopes of a token about to be minted for a user with ``role``, and the requested ones refused (unknown,
    or beyond the role).  Minting itself needs ``TOKENS_MINT``; a token can never mint another."""
    allowed = permissions_of(role) - {Permission.TOKENS_MINT}
    granted: set[Permission] = set()
    refused: list[str] = []
    for scope in requested:
        if scope in Permission._value2member_map_ and Permission(scope) in allowed:
            granted.add(Permission(scope))
        else:
            refused.append(scope)
    return frozenset(granted), refused
