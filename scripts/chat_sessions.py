"""``medspa chat-sessions …``: list web chat sessions and revoke them server-side.

A chat session token is signed and valid for ``CHAT_TOKEN_TTL_S``; revoking marks its ``chat_sessions`` row,
and the webhook app checks that row on every use: the next message, stream ticket or session resume with the
token is refused (401), and an open reply stream ends within about a minute.  The widget then starts a fresh
session (a new, empty conversation).  Use it for a leaked token, an abusive session, or a patient who asks.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy import text

from scripts.common import CommandError, add_clinic_argument

_COLUMNS = ["session", "conversation", "origin", "created", "expires", "revoked"]


def register(subparsers: Any) -> None:
    sessions = subparsers.add_parser(
        "chat-sessions",
        help="list web chat sessions and revoke them",
        description="Web chat sessions of a clinic; revoking one makes its token stop working at once.",
    )
    sub = sessions.add_subparsers(dest="chat_sessions_command", metavar="SUBCOMMAND", required=True)

    listing = sub.add_parser("list", help="recent sessions", description="List a clinic's recent chat sessions.")
    add_clinic_argument(listing)
    listing.add_argument("--conversation", type=int, metavar="ID", help="only this conversation's sessions")
    listing.add_argument("--limit", type=int, default=50, help="at most this many rows (default 50)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=sessions_list)

    revoke = sub.add_parser(
        "revoke",
        help="revoke sessions: their tokens are refused from now on",
        description="Revoke chat sessions by session id, by conversation, or all of the clinic's open sessions.",
    )
    add_clinic_argument(revoke)
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--session", metavar="SESSION_ID", help="one session (the id shown by `list`)")
    which.add_argument("--conversation", type=int, metavar="ID", help="every session of this conversation")
    which.add_argument("--all", action="store_true", help="every open session of the clinic")
    revoke.add_argument("--reason", default="revoked by staff", help="recorded with the revocation")
    revoke.set_defaults(handler=sessions_revoke)


def sessions_list(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for, print_table

    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        rows = (
            session.execute(
                text(
                    """SELECT token_id AS session, conversation_id AS conversation, origin, created_at AS created,
                              expires_at AS expires, revoked_at AS revoked
                       FROM chat_sessions
                       WHERE CAST(:conversation AS bigint) IS NULL OR conversation_id = :conversation
                       ORDER BY id DESC LIMIT :limit"""
                ),
                {"conversation": args.conversation, "limit": args.limit},
            )
            .mappings()
            .all()
        )
    if args.json:
        print(json.dumps([dict(r) for r in rows], default=str, indent=2))
    else:
        print_table([{k: ("" if v is None else v) for k, v in r.items()} for r in rows], _COLUMNS)
    return 0


def sessions_revoke(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for

    clinic_id = clinic_id_for(args.clinic)
    with app_database().tenant_scope(clinic_id) as session:
        revoked = session.execute(
            text(
                """UPDATE chat_sessions SET revoked_at = now(), revoked_reason = :reason
                   WHERE revoked_at IS NULL AND expires_at > now()
                     AND (:all OR token_id = :session OR conversation_id = :conversation)
                   RETURNING token_id"""
            ),
            {"reason": args.reason, "all": bool(args.all), "session": args.session, "conversation": args.conversation},
        ).all()
    if not revoked and args.session:
        raise CommandError(f"no open chat session {args.session!r} in clinic {args.clinic!r}")
    print(f"revoked {len(revoked)} chat session(s)")
    return 0
