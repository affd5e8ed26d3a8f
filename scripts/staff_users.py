"""``medspa staff-users …``: the console's staff accounts — bootstrap the first owner, list, disable, remove from a
clinic, reset a password, enrol a TOTP second factor, mint an API access token (the changes are
``console.staff_admin``'s, shared with the console's owner pages).

Runs as the app role inside the clinic's row-level-security scope, like every staff command; each change is
written to the clinic's audit log (actor ``cli``).  Passwords are read from the terminal (or one line of
standard input with ``--password-stdin``), never from arguments, and never printed or logged.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from db.models.staff import STAFF_ROLES
from scripts.common import CommandError, add_clinic_argument


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "staff-users",
        help="staff console accounts: add the first owner, list, disable, reset passwords",
        description="Staff accounts of the web console (medspa console).",
    )
    sub = group.add_subparsers(dest="staff_users_command", metavar="SUBCOMMAND", required=True)

    add = sub.add_parser(
        "add",
        help="add a staff user to a clinic (or change their role there)",
        description="Create the account if the email is new (with a password, unless --no-password: sign-in "
        "through OpenID Connect only), and give it ROLE in the clinic.",
    )
    add.add_argument("email", metavar="EMAIL")
    add_clinic_argument(add)
    add.add_argument("--role", required=True, choices=STAFF_ROLES)
    add.add_argument(
        "--provider", metavar="SLUG", help="the providers row a provider is (required for --role provider)"
    )
    add.add_argument("--name", default="", help="display name")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
    secret.add_argument("--no-password", action="store_true", help="sign-in through OpenID Connect only")
    add.set_defaults(handler=staff_users_add)

    listing = sub.add_parser("list", help="the clinic's staff and roles", description="List the clinic's staff.")
    add_clinic_argument(listing)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=staff_users_list)

    for name, help_text, handler in (
        ("disable", "disable an account (signs it out everywhere; its API tokens stop working)", staff_users_disable),
        ("enable", "enable a disabled account again", staff_users_enable),
        ("remove", "take someone off this clinic's staff (their account and other clinics stay)", staff_users_remove),
    ):
        cmd = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        cmd.add_argument("email", metavar="EMAIL")
        add_clinic_argument(cmd)
        cmd.set_defaults(handler=handler)

    reset = sub.add_parser(
        "reset-password",
        help="set a new password (signs the account out everywhere and ends its API tokens)",
        description="Set a new password for a staff member of the clinic and end their sessions and API tokens.",
    )
    reset.add_argument("email", metavar="EMAIL")
    add_clinic_argument(reset)
    reset.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
    reset.set_defaults(handler=staff_users_reset_password)

    totp = sub.add_parser(
        "totp",
        help="enrol (or remove) an owner's TOTP second factor",
        description="--enable prints a new secret and its otpauth:// URI for an authenticator app (shown once); "
        "--disable removes the second factor.",
    )
    totp.add_argument("email", metavar="EMAIL")
    add_clinic_argument(totp)
    choice = totp.add_mutually_exclusive_group(required=True)
    choice.add_argument("--enable", action="store_true")
    choice.add_argument("--disable", action="store_true")
    totp.set_defaults(handler=staff_users_totp)

    token = sub.add_parser(
        "token",
        help="mint a short-lived API access token for an integration",
        description="Print a signed access token acting for EMAIL in the clinic, with the given scopes "
        "(at most what their role allows), valid for --ttl seconds.",
    )
    token.add_argument("email", metavar="EMAIL")
    add_clinic_argument(token)
    token.add_argument("--scope", action="append", required=True, metavar="SCOPE", help="e.g. clients:read (repeat)")
    token.add_argument("--ttl", type=int, default=900, help="seconds (default 900)")
    token.set_defaults(handler=staff_users_token)


# ------------------------------------------------------------------ helpers
def _read_password(from_stdin: bool) -> str:
    from console.passwords import password_problem

    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        if not sys.stdin.isatty():
            raise CommandError("no terminal to ask for the password: pass --password-stdin (or --no-password)")
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise CommandError("the passwords differ")
    if problem := password_problem(password):
        raise CommandError(problem)
    return password


def _keys() -> Any:
    from console.keys import ConsoleKeys
    from medspa.secrets import load_console_secrets
    from medspa.settings import get_settings

    return ConsoleKeys(load_console_secrets(get_settings()).secret_key)


def _member(session: Any, clinic_id: int, email: str) -> tuple[Any, Any]:
    """The staff user with this email and their membership in the clinic, or a clear error."""
    from console import store

    row = store.find_for_sign_in(session, email)
    membership = store.membership_in(session, row.id, clinic_id) if row else None
    if row is None or membership is None:
        raise CommandError(f"no staff user {email!r} in this clinic (see: medspa staff-users list)")
    return row, membership


def _cli_actor() -> Any:
    from console.audit import Actor

    return Actor(None, "cli")


# ------------------------------------------------------------------ commands
def _admin(fn: Any) -> Any:
    """Run a ``console.staff_admin`` change; its refusals are one-line command errors."""
    from console.staff_admin import StaffAdminError

    try:
        return fn()
    except StaffAdminError as exc:
        raise CommandError(str(exc)) from None


def staff_users_add(args: argparse.Namespace) -> int:
    from console import staff_admin, store
    from domain.staff_access import StaffRole
    from scripts.common import app_database, clinic_id_for

    email = args.email.strip()
    role = StaffRole(args.role)
    if (role == StaffRole.PROVIDER) != bool(args.provider):
        raise CommandError("--provider SLUG goes with --role provider (and only with it)")
    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        provider_id = _admin(lambda: staff_admin.provider_id_for(session, args.provider)) if args.provider else None
        existing = store.find_for_sign_in(session, email)
        membership = store.membership_in(session, existing.id, clinic_id) if existing is not None else None
        joined = existing is not None and membership is None
        if existing is not None and membership is not None:
            if args.password_stdin:
                raise CommandError(f"{email} already has an account: use reset-password to change its password")
            change = _admin(
                lambda: staff_admin.set_role(session, clinic_id, _cli_actor(), existing.id, role, provider_id)
            )
        else:
            if joined and args.password_stdin:
                raise CommandError(f"{email} already has an account (it keeps its password): add it without one")
            password = None if joined or args.no_password else _read_password(args.password_stdin)
            change = _admin(
                lambda: staff_admin.add_staff(
                    session,
                    clinic_id,
                    _cli_actor(),
                    email=email,
                    role=role,
                    provider_id=provider_id,
                    display_name=args.name,
                    password=password,
                )
            )
    if change.created:
        print(f"Added {email} as {role.value} of {args.clinic} (staff user {change.staff_user_id})")
    elif joined:
        # The account's password is whatever was set before (possibly by another clinic's owner): say so, so the
        # operator can reset it when they did not choose it.
        how = (
            "it signs in with its own password, unchanged (reset-password if you are unsure who knows it)"
            if existing is not None and existing.password_hash is not None
            else "it has no password (single sign-on only)"
        )
        print(
            f"Added the existing account {email} to {args.clinic} as {role.value} "
            f"(staff user {change.staff_user_id}): {how}"
        )
    else:
        print(f"Updated {email} as {role.value} of {args.clinic} (staff user {change.staff_user_id})")
    return 0


def staff_users_list(args: argparse.Namespace) -> int:
    from console import store
    from scripts.common import app_database, clinic_id_for, print_json, print_table

    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        rows = store.clinic_staff(session, clinic_id)
    if args.json:
        print_json(rows)
        return 0
    print_table(
        [
            {
                "id": r["id"],
                "email": r["email"],
                "name": r["display_name"],
                "role": r["role"],
                "status": "disabled" if r["disabled_at"] else "active",
                "2fa": "totp" if r["has_totp"] else "",
                "last_sign_in": r["last_sign_in_at"] or "",
            }
            for r in rows
        ],
        ["id", "email", "name", "role", "status", "2fa", "last_sign_in"],
    )
    return 0


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    from console import staff_admin
    from scripts.common import app_database, clinic_id_for

    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        row = _admin(lambda: staff_admin.member_by_email(session, clinic_id, args.email))
        _admin(lambda: staff_admin.set_disabled(session, clinic_id, _cli_actor(), row.id, disabled))
    print(f"{args.email} {'disabled (signed out everywhere)' if disabled else 'enabled'}")
    return 0


def staff_users_disable(args: argparse.Namespace) -> int:
    return _set_disabled(args, True)


def staff_users_enable(args: argparse.Namespace) -> int:
    return _set_disabled(args, False)


def staff_users_remove(args: argparse.Namespace) -> int:
    from console import staff_admin
    from scripts.common import app_database, clinic_id_for

    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        row = _admin(lambda: staff_admin.member_by_email(session, clinic_id, args.email))
        _admin(lambda: staff_admin.remove_member(session, clinic_id, _cli_actor(), row.id))
    print(f"{args.email} removed from {args.clinic}'s staff")
    return 0


def staff_users_reset_password(args: argparse.Namespace) -> int:
    from console import staff_admin
    from scripts.common import app_database, clinic_id_for

    clinic_id = clinic_id_for(args.clinic)
    password = _read_password(args.password_stdin)
    with app_database().tenant_scope(clinic_id) as session:
        row = _admin(lambda: staff_admin.member_by_email(session, clinic_id, args.email))
        _admin(lambda: staff_admin.reset_password(session, clinic_id, _cli_actor(), row.id, password))
    print(f"Password of {args.email} reset; their sessions are signed out and their API tokens no longer work")
    return 0


def staff_users_totp(args: argparse.Namespace) -> int:
    from console import audit, store, totp
    from domain.staff_access import StaffRole
    from scripts.common import app_database, clinic_id_for

    clinic_id = clinic_id_for(args.clinic)
    keys = _keys()
    with app_database().tenant_scope(clinic_id) as session:
        row, membership = _member(session, clinic_id, args.email)
        if args.enable and membership.role != StaffRole.OWNER:
            raise CommandError("the TOTP second factor is for owners")
        secret = totp.new_secret() if args.enable else None
        store.set_totp_secret(session, row.id, totp.encrypt_secret(keys, secret) if secret else None)
        audit.record(
            session,
            clinic_id,
            _cli_actor(),
            "staff.totp_enabled" if secret else "staff.totp_disabled",
            target_type="staff_user",
            target_id=row.id,
        )
    if secret:
        print(f"TOTP enabled for {args.email}. Add it to an authenticator app (shown once):")
        print(f"  secret: {secret}")
        print(f"  uri:    {totp.provisioning_uri(secret, row.email)}")
    else:
        print(f"TOTP removed for {args.email}")
    return 0


def staff_users_token(args: argparse.Namespace) -> int:
    from console import audit, store
    from console.tokens import MIN_TTL_S, mint_access_token
    from domain.staff_access import parse_scopes
    from medspa.settings import get_settings
    from scripts.common import app_database, clinic_id_for

    max_ttl = get_settings().console_access_token_max_ttl_s
    if not MIN_TTL_S <= args.ttl <= max_ttl:
        raise CommandError(f"--ttl must be between {MIN_TTL_S} and {max_ttl} seconds")
    clinic_id = clinic_id_for(args.clinic)
    keys = _keys()
    with app_database().tenant_scope(clinic_id) as session:
        row, membership = _member(session, clinic_id, args.email)
        if row.disabled_at is not None:
            raise CommandError(f"{args.email} is disabled")
        scopes, refused = parse_scopes(args.scope, membership.role)
        if refused:
            raise CommandError(f"scopes not allowed for a {membership.role.value}: {', '.join(refused)}")
        user = store.get_user(session, row.id)  # its password_changed_at: the token's credentials version
        if user is None:
            raise CommandError(f"no staff user {args.email!r} in this clinic")
        token, claims = mint_access_token(
            keys,
            staff_user_id=row.id,
            clinic_id=clinic_id,
            scopes=frozenset(s.value for s in scopes),
            ttl_s=args.ttl,
            password_changed_at=user.password_changed_at,
        )
        audit.record(
            session,
            clinic_id,
            _cli_actor(),
            "token.minted",
            target_type="staff_user",
            target_id=row.id,
            detail={"token_id": claims.token_id, "scopes": sorted(claims.scopes), "expires_at": claims.expires_at},
        )
    print(token)
    return 0
