"""Managing a clinic's staff: add (a new account, or an existing one joining), change a role, remove from the
clinic, disable or enable, reset a password.  The one home of these rules — ``medspa staff-users`` and the
console's owner pages both call it — each change written to the clinic's audit log in the caller's transaction.

Rules:
- a provider is linked to a providers row of the clinic (and only a provider is);
- from the console, the clinic keeps at least one active owner (nobody demotes or disables the last one; the
  operator on the server — ``medspa staff-users``, an actor without a staff user — can always add one);
- an account is global (one email, one password for every clinic it works at), so from the console an owner may
  disable, enable or reset the password of an account only when it works at this clinic alone — otherwise the
  change would reach into a clinic they do not run.  The operator may;
- from the console, an existing account joins the clinic only when it has no password (sign-in through OpenID
  Connect only: the identity provider proves the email at every sign-in).  Any owner may create an account for
  any email with a password of their choosing, and reset the password of one that works at their clinic alone,
  so a password may be known to another clinic's owner: an account with one joining here would let them in.
  The operator on the server adds it (it joins with its own password, unchanged).  Together with the rule above,
  no owner can set a password on an account that works at another clinic too;
- nobody disables their own account or removes themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from console import audit, store
from console.passwords import hash_password, password_problem
from domain.staff_access import StaffRole

ErrorKind = Literal["invalid", "not-found", "conflict"]

_PROVIDER_BY_SLUG = text("SELECT id FROM providers WHERE slug = :slug")
_PROVIDER_EXISTS = text("SELECT id FROM providers WHERE id = :id")
_ACTIVE_OWNERS = text(
    """SELECT count(*) FROM staff_memberships m JOIN staff_users u ON u.id = m.staff_user_id
       WHERE m.clinic_id = :clinic_id AND m.role = 'owner' AND u.disabled_at IS NULL AND u.id <> :except_id"""
)
_OTHER_CLINICS = text("SELECT medspa_staff_other_clinics(:id)")
_REMOVE_MEMBERSHIP = text("DELETE FROM staff_memberships WHERE staff_user_id = :id AND clinic_id = :clinic_id")


class StaffAdminError(Exception):
    """A change that cannot be made, in one line; ``kind`` says why (bad input, nobody, a rule refuses it)."""

    def __init__(self, message: str, *, kind: ErrorKind = "invalid", field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field


@dataclass(frozen=True)
class StaffChange:
    staff_user_id: int
    email: str
    created: bool = False


def provider_id_for(session: Session, slug: str) -> int:
    provider_id = session.execute(_PROVIDER_BY_SLUG, {"slug": slug}).scalar()
    if provider_id is None:
        raise StaffAdminError(f"no provider {slug!r} in this clinic", field="provider")
    return int(provider_id)


def member_by_email(session: Session, clinic_id: int, email: str) -> store.SignInRow:
    row = store.find_for_sign_in(session, email)
    if row is None or store.membership_in(session, row.id, clinic_id) is None:
        raise StaffAdminError(f"no staff user {email!r} in this clinic", kind="not-found")
    return row


def _member(session: Session, clinic_id: int, staff_user_id: int) -> tuple[store.StaffUser, store.Membership]:
    membership = store.membership_in(session, staff_user_id, clinic_id)
    user = store.get_user(session, staff_user_id) if membership else None
    if membership is None or user is None:
        raise StaffAdminError("no staff member with that id in this clinic", kind="not-found")
    return user, membership


def _check_provider_link(session: Session, role: StaffRole, provider_id: int | None) -> None:
    if (role == StaffRole.PROVIDER) != (provider_id is not None):
        raise StaffAdminError(
            "a provider is linked to a provider of the clinic (and only a provider)", field="provider"
        )
    if provider_id is not None and session.execute(_PROVIDER_EXISTS, {"id": provider_id}).scalar() is None:
        raise StaffAdminError(f"no provider {provider_id} in this clinic", field="provider_id")


def _check_password(password: str) -> str:
    if problem := password_problem(password):
        raise StaffAdminError(problem, field="password")
    return hash_password(password)


def _keeps_an_owner(session: Session, clinic_id: int, actor: audit.Actor, staff_user_id: int, what: str) -> None:
    if actor.staff_user_id is None:
        return  # the operator on the server
    if int(session.execute(_ACTIVE_OWNERS, {"clinic_id": clinic_id, "except_id": staff_user_id}).scalar_one()) == 0:
        raise StaffAdminError(f"{what} would leave the clinic without an active owner", kind="conflict")


def _account_wide(session: Session, actor: audit.Actor, staff_user_id: int, what: str) -> None:
    """From the console, an account-wide change only for an account that works at this clinic alone."""
    if actor.staff_user_id is None:
        return  # the operator on the server
    others = session.execute(_OTHER_CLINICS, {"id": staff_user_id}).scalar()
    if others:
        raise StaffAdminError(
            f"this person also works at another clinic: {what} would change their account there too; ask the "
            "operator (medspa staff-users) or remove them from this clinic's staff",
            kind="conflict",
        )


# ------------------------------------------------------------------ changes
def add_staff(
    session: Session,
    clinic_id: int,
    actor: audit.Actor,
    *,
    email: str,
    role: StaffRole,
    provider_id: int | None = None,
    display_name: str = "",
    password: str | None = None,
) -> StaffChange:
    """Create the account when the email is new (with ``password``, or none: sign-in through OpenID Connect
    only) and make it a member of the clinic with ``role``.  An account that exists elsewhere joins the clinic
    as it is (no ``password`` may be given: its own stays) — from the console only when it has no password;
    one that is already a member here is a conflict (change the role)."""
    email = email.strip()
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise StaffAdminError(f"{email!r} is not an email address", field="email")
    _check_provider_link(session, role, provider_id)
    existing = store.find_for_sign_in(session, email)
    if existing is not None:
        if store.membership_in(session, existing.id, clinic_id) is not None:
            raise StaffAdminError(f"{email} is already on this clinic's staff: change their role", kind="conflict")
        if actor.staff_user_id is not None and existing.password_hash is not None:
            # Whoever set that password (possibly another clinic's owner) would sign in here: only the operator,
            # who can tell whose account it is, lets it join.
            raise StaffAdminError(
                f"{email} already has an account with a password (one another clinic's owner may have set), so it "
                "cannot join from the console: ask the operator to add them (medspa staff-users add on the server), "
                "or have them use single sign-on",
                kind="conflict",
            )
        if password is not None:
            raise StaffAdminError(
                f"{email} already has an account (with its own password): add them without one", field="password"
            )
        user_id, created = existing.id, False
    else:
        password_hash = _check_password(password) if password is not None else None
        user_id = store.create_user(session, email=email, display_name=display_name, password_hash=password_hash)
        created = True
    store.set_membership(session, clinic_id=clinic_id, staff_user_id=user_id, role=role, provider_id=provider_id)
    audit.record(
        session,
        clinic_id,
        actor,
        "staff.added",
        target_type="staff_user",
        target_id=user_id,
        detail={"role": role.value, "provider_id": provider_id, "new_account": created},
    )
    return StaffChange(user_id, email, created)


def set_role(
    session: Session,
    clinic_id: int,
    actor: audit.Actor,
    staff_user_id: int,
    role: StaffRole,
    provider_id: int | None = None,
) -> StaffChange:
    user, membership = _member(session, clinic_id, staff_user_id)
    _check_provider_link(session, role, provider_id)
    if membership.role == StaffRole.OWNER and role != StaffRole.OWNER and user.active:
        _keeps_an_owner(session, clinic_id, actor, staff_user_id, "this change")
    store.set_membership(session, clinic_id=clinic_id, staff_user_id=staff_user_id, role=role, provider_id=provider_id)
    audit.record(
        session,
        clinic_id,
        actor,
        "staff.role_set",
        target_type="staff_user",
        target_id=staff_user_id,
        detail={"role": role.value, "previous": membership.role.value, "provider_id": provider_id},
    )
    return StaffChange(staff_user_id, user.email)


def set_disabled(
    session: Session, clinic_id: int, actor: audit.Actor, staff_user_id: int, disabled: bool
) -> StaffChange:
    """Disable (signed out everywhere at once; API tokens stop working) or enable an account."""
    user, membership = _member(session, clinic_id, staff_user_id)
    if disabled and actor.staff_user_id == staff_user_id:
        raise StaffAdminError("you cannot disable your own account", kind="conflict")
    _account_wide(session, actor, staff_user_id, "disabling" if disabled else "enabling")
    if disabled and membership.role == StaffRole.OWNER and user.active:
        _keeps_an_owner(session, clinic_id, actor, staff_user_id, "disabling this owner")
    store.set_disabled(session, staff_user_id, disabled)
    audit.record(
        session,
        clinic_id,
        actor,
        "staff.disabled" if disabled else "staff.enabled",
        target_type="staff_user",
        target_id=staff_user_id,
    )
    return StaffChange(staff_user_id, user.email)


def reset_password(
    session: Session, clinic_id: int, actor: audit.Actor, staff_user_id: int, password: str
) -> StaffChange:
    """A new password; the account's sessions and API tokens end (it signs in again with the new one, and its
    integrations need new tokens: ``store.set_password_hash`` moves the version tokens carry)."""
    user, _ = _member(session, clinic_id, staff_user_id)
    password_hash = _check_password(password)
    _account_wide(session, actor, staff_user_id, "resetting the password")
    store.set_password_hash(session, staff_user_id, password_hash)
    store.revoke_user_sessions(session, staff_user_id)
    audit.record(session, clinic_id, actor, "staff.password_reset", target_type="staff_user", target_id=staff_user_id)
    return StaffChange(staff_user_id, user.email)


def remove_member(session: Session, clinic_id: int, actor: audit.Actor, staff_user_id: int) -> StaffChange:
    """Take someone off this clinic's staff (their account, and any other clinic's membership, stay): their next
    request here is refused.  The way to part with someone who also works at another clinic."""
    user, membership = _member(session, clinic_id, staff_user_id)
    if actor.staff_user_id == staff_user_id:
        raise StaffAdminError("you cannot remove yourself from the staff", kind="conflict")
    if membership.role == StaffRole.OWNER and user.active:
        _keeps_an_owner(session, clinic_id, actor, staff_user_id, "removing this owner")
    session.execute(_REMOVE_MEMBERSHIP, {"id": staff_user_id, "clinic_id": clinic_id})
    audit.record(
        session,
        clinic_id,
        actor,
        "staff.removed",
        target_type="staff_user",
        target_id=staff_user_id,
        detail={"role": membership.role.value},
    )
    return StaffChange(staff_user_id, user.email)
