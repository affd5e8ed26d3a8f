"""``medspa kb …``: the clinic knowledge base the agent answers from.

Articles are Markdown or text files: the first ``# Heading`` is the title, the
rest is the body, the file name is the slug.  Ingest is idempotent (unchanged
articles are left alone, only missing embeddings are filled), so running it
again after editing one file re-indexes just that file.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from sqlalchemy import text

from scripts.common import CommandError, add_clinic_argument

ARTICLE_SUFFIXES = (".md", ".markdown", ".txt")


def register(subparsers: Any) -> None:
    kb = subparsers.add_parser(
        "kb",
        help="knowledge base: ingest, list, show and delete articles",
        description="The knowledge base the agent searches. Articles are Markdown/text files: first '# Title' "
        "line is the title, the file name is the slug.",
    )
    sub = kb.add_subparsers(dest="kb_command", metavar="SUBCOMMAND", required=True)

    ingest = sub.add_parser(
        "ingest",
        help="add or update articles from files or folders (idempotent)",
        description="Add or update articles from Markdown/text files or folders of them. "
        "Unchanged articles are skipped; embeddings use the configured embedder "
        "(OpenAI, local MiniLM, or none: full-text search only).",
    )
    add_clinic_argument(ingest)
    ingest.add_argument("paths", metavar="PATH", nargs="+", type=Path, help="a .md/.txt file or a folder of them")
    ingest.set_defaults(handler=kb_ingest)

    listing = sub.add_parser("list", help="list a clinic's articles", description="List a clinic's articles.")
    add_clinic_argument(listing)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=kb_list)

    show = sub.add_parser("show", help="print one article", description="Print one article's title and text.")
    show.add_argument("slug", metavar="SLUG", help="article slug (see: kb list)")
    add_clinic_argument(show)
    show.add_argument("--json", action="store_true", help="print JSON (with chunks) instead of text")
    show.set_defaults(handler=kb_show)

    delete = sub.add_parser(
        "delete",
        help="delete one article and its chunks",
        description="Delete one article and its search chunks; the agent stops citing it.",
    )
    delete.add_argument("slug", metavar="SLUG", help="article slug (see: kb list)")
    add_clinic_argument(delete)
    delete.set_defaults(handler=kb_delete)


# ---------------------------------------------------------------------------------------------- files
def slug_for(path: Path) -> str:
    from worker.knowledge import article_slug

    slug = article_slug(path.stem)
    if not slug:
        raise CommandError(f"{path}: cannot make an article slug from this file name")
    return slug


def read_article(path: Path) -> tuple[str, str]:
    """(title, body): the first '# Heading' is the title; without one, the file name is."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    lines = raw.strip().splitlines()
    if lines and re.match(r"^#\s+\S", lines[0]):
        title, body = lines[0].lstrip("#").strip(), "\n".join(lines[1:]).strip()
    else:
        title, body = path.stem.replace("-", " ").replace("_", " ").strip().capitalize(), raw.strip()
    if not body:
        raise CommandError(f"{path}: the article has no text after its title")
    return title[:300], body


def article_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in ARTICLE_SUFFIXES)
            if not found:
                raise CommandError(f"{path}: no .md or .txt files in this folder")
            files += found
        elif path.is_file():
            if path.suffix.lower() not in ARTICLE_SUFFIXES:
                raise CommandError(f"{path}: not a Markdown or text file (.md, .markdown, .txt)")
            files.append(path)
        else:
            raise CommandError(f"{path}: no such file or folder")
    slugs: dict[str, Path] = {}
    for file in files:
        other = slugs.setdefault(slug_for(file), file)
        if other != file:
            raise CommandError(f"{file} and {other} would both be article {slug_for(file)!r}; rename one")
    return files


# ---------------------------------------------------------------------------------------------- commands
def kb_ingest(args: argparse.Namespace) -> int:
    from medspa.settings import get_settings
    from scripts.common import app_database, clinic_id_for, infrastructure
    from worker.integrations.embedders import embedder_for
    from worker.knowledge import ingest_article

    files = article_files(args.paths)
    articles = [(slug_for(f), *read_article(f), f) for f in files]  # read everything before writing anything
    clinic_id = clinic_id_for(args.clinic)
    infrastructure()
    settings = get_settings()
    embedder = embedder_for(settings)
    database = app_database()
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    with database.tenant_scope(clinic_id) as session:
        existing = set(session.execute(text("SELECT slug FROM kb_documents")).scalars())
    for slug, title, body, path in articles:
        result = ingest_article(database, clinic_id, slug, title, body, embedder, source=str(path))
        state = "unchanged" if not result.changed else ("updated" if slug in existing else "added")
        counts[state] += 1
        embedded = f", {result.embedded} embedded" if result.embedded else ""
        print(f"{state:<9} {slug} ({result.chunks} chunks{embedded})")
    search = f"embeddings: {embedder.name}" if embedder else "no embedder: full-text search only"
    print(
        f"{args.clinic}: {counts['added']} added, {counts['updated']} updated, {counts['unchanged']} unchanged "
        f"({search})"
    )
    return 0


def kb_list(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for, print_json, print_table

    with app_database().tenant_scope(clinic_id_for(args.clinic)) as session:
        rows = [
            dict(r)
            for r in session.execute(
                text(
                    """SELECT d.slug, d.title, count(k.id) AS chunks, count(k.embedding) AS embedded, d.source,
                      d.updated_at
               FROM kb_documents d LEFT JOIN kb_chunks k ON k.document_id = d.id
               GROUP BY d.id ORDER BY d.slug"""
                )
            ).mappings()
        ]
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            row["updated_at"] = f"{row['updated_at']:%Y-%m-%d %H:%M}"
        print_table(rows, ["slug", "title", "chunks", "embedded", "source", "updated_at"])
    return 0


def kb_show(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for, print_json

    with app_database().tenant_scope(clinic_id_for(args.clinic)) as session:
        doc = (
            session.execute(
                text("SELECT id, slug, title, body, source, updated_at FROM kb_documents WHERE slug = :s"),
                {"s": args.slug},
            )
            .mappings()
            .one_or_none()
        )
        if doc is None:
            raise CommandError(f"no article {args.slug!r} at clinic {args.clinic!r} (see: medspa kb list)")
        chunks = [
            dict(r)
            for r in session.execute(
                text("""SELECT chunk_index, content, embedding IS NOT NULL AS embedded FROM kb_chunks
                    WHERE document_id = :d ORDER BY chunk_index"""),
                {"d": doc["id"]},
            ).mappings()
        ]
    if args.json:
        print_json({**dict(doc), "chunks": chunks})
        return 0
    print(f"# {doc['title']}\n")
    print(doc["body"])
    print(
        f"\n[{args.slug}: {len(chunks)} chunks, {sum(c['embedded'] for c in chunks)} embedded; source "
        f"{doc['source'] or '-'}]"
    )
    return 0


def kb_delete(args: argparse.Namespace) -> int:
    from scripts.common import app_database, clinic_id_for
    from worker.knowledge import delete_article

    with app_database().tenant_scope(clinic_id_for(args.clinic)) as session:
        deleted = delete_article(session, slug=args.slug)
    if deleted is None:
        raise CommandError(f"no article {args.slug!r} at clinic {args.clinic!r} (see: medspa kb list)")
    print(f"deleted article {args.slug}")
    return 0
