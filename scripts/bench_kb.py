"""The ``kb_search`` benchmark scenario: synthetic chunks loaded by binary COPY into one big and one small clinic,
then hybrid searches timed (wall and Postgres CPU).  Run through ``scripts/bench.py --only kb_search``."""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from scripts.bench_measure import count_rows, libpq_url, pct, say

if TYPE_CHECKING:
    from scripts.bench import BenchInfra


# ------------------------------------------------------------------ kb_search
KB_DIMENSIONS = 384  # db.models.EMBEDDING_DIMENSIONS
KB_SMALL_CLINIC_SHARE = 0.01  # the second clinic gets 1 % as many chunks: the clinic-filter case


class _SyntheticVectors:
    """Embeddings for the benchmark without a model.

    ``lowdim`` (the default): vectors that vary along a few dozen directions around a shared mean, plus noise —
    the structure of real sentence embeddings (related texts close, unrelated ones at cosine distance 0.6-1.0),
    so a question has true near neighbours within the search's distance cut-off, and HNSW meets the recall it
    meets on real data (measured: recall@20 0.88 at 100k chunks, ef_search 40).  ``random``: isotropic noise,
    where every vector sits at distance ~1.0 from every other, no vector hit passes the cut-off and HNSW recall
    collapses (~0.3) — the worst case, kept to compare with the figures measured before 2026-12-02.
    """

    def __init__(self, kind: str, seed: int) -> None:
        import numpy as np

        self.kind = kind
        self._np = np
        self._rng = np.random.default_rng(seed)
        shape = np.random.default_rng(5)  # the same "model" for chunks and questions
        self._directions = shape.standard_normal((24, KB_DIMENSIONS)).astype(np.float32)
        self._mean = 2.0 * shape.standard_normal(KB_DIMENSIONS).astype(np.float32)

    def matrix(self, count: int) -> Any:
        np, rng = self._np, self._rng
        if self.kind == "random":
            vectors = rng.standard_normal((count, KB_DIMENSIONS), dtype=np.float32)
        else:
            vectors = rng.standard_normal((count, 24), dtype=np.float32) @ self._directions + self._mean
            vectors += 0.3 * rng.standard_normal((count, KB_DIMENSIONS), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class _BenchEmbedder:
    name = "bench-synthetic"
    dimensions = KB_DIMENSIONS

    def __init__(self, vectors: _SyntheticVectors) -> None:
        self._vectors = vectors

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self._vectors.matrix(len(texts))]


def _copy_chunks_binary(
    conn: psycopg.Connection[Any], clinic_id: int, document_id: int, texts: list[str], vectors: Any, model: str
) -> None:
    """COPY in binary: ~40x faster than formatting 384 floats per row as text."""
    import struct

    big_endian = vectors.astype(">f4")
    vector_header = struct.pack(">HH", KB_DIMENSIONS, 0)
    clinic = struct.pack(">iq", 8, clinic_id)
    document = struct.pack(">iq", 8, document_id)
    model_field = struct.pack(">i", len(model)) + model.encode()
    encoded = [t.encode() for t in texts]
    with conn.cursor().copy(
        "COPY kb_chunks (clinic_id, document_id, chunk_index, title, content, embedding, embedding_model) "
        "FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
        buffer = bytearray()
        for i in range(len(big_endian)):
            title = f"Bench article {i}".encode()
            content = encoded[i]
            embedding = vector_header + big_endian[i].tobytes()
            buffer += struct.pack(">h", 7) + clinic + document + struct.pack(">ii", 4, i)
            buffer += struct.pack(">i", len(title)) + title + struct.pack(">i", len(content)) + content
            buffer += struct.pack(">i", len(embedding)) + embedding + model_field
            if len(buffer) > 1 << 20:
                copy.write(bytes(buffer))
                buffer.clear()
        copy.write(bytes(buffer) + struct.pack(">h", -1))


def _load_kb_chunks(infra: BenchInfra, counts: dict[int, int], vectors: _SyntheticVectors) -> dict[str, float]:
    """Bulk-load synthetic chunks (the clinic's seeded texts, repeated) per clinic: COPY with the HNSW and GIN
    indexes dropped, then rebuilt from their own definitions (the migration's) — a bulk build is ~10x faster than
    growing them row by row.  Returns the seconds each phase took."""
    url = libpq_url(infra.owner_url)
    timings: dict[str, float] = {}
    with psycopg.connect(url) as conn:
        rebuilt = conn.execute(
            """SELECT indexname, indexdef FROM pg_indexes
               WHERE tablename = 'kb_chunks' AND indexname IN ('ix_kb_chunks_embedding_hnsw', 'ix_kb_chunks_tsv')"""
        ).fetchall()
        texts = [r[0] for r in conn.execute("SELECT content FROM kb_chunks WHERE clinic_id = 1 ORDER BY id")]
        started = time.perf_counter()
        for name, _ in rebuilt:
            conn.execute(f"DROP INDEX {name}")
        picker = random.Random(7)
        for clinic_id, count in counts.items():
            document_id = conn.execute(
                """INSERT INTO kb_documents (clinic_id, slug, title, body, content_hash)
                   VALUES (%s, 'bench-bulk', 'Bench bulk', '', 'x') RETURNING id""",
                (clinic_id,),
            ).fetchone()[0]  # type: ignore[index]
            chosen = [picker.choice(texts) for _ in range(count)]
            _copy_chunks_binary(conn, clinic_id, document_id, chosen, vectors.matrix(count), _BenchEmbedder.name)
        timings["copy_s"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '1GB'")
        for _, definition in rebuilt:
            conn.execute(definition)
        conn.commit()
        conn.execute("ANALYZE kb_chunks")
        conn.commit()
        timings["index_s"] = time.perf_counter() - started
    return timings


KB_QUERIES = (
    "does it hurt",
    "how much is botox",
    "parking near the clinic",
    "can I work out after filler",
    "do you take HSA cards",
    "what about pregnancy",
    "how long does hydrafacial take",
)


def _process_cpu_ms(pid: int) -> float:
    """User + system CPU of a process on this machine (the embedded Postgres backend serving the searches)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


@dataclass
class _SearchTimings:
    wall_ms: list[float]  # sorted
    postgres_cpu_ms: float  # per search: what the machine's other load can't inflate much, unlike wall time
    client_cpu_ms: float


def _time_searches(database: Any, clinic_id: int, embedder: _BenchEmbedder, count: int) -> _SearchTimings:
    from worker.knowledge import search_knowledge

    with database.engine.connect() as conn:  # the pool's only connection: the backend every search runs on
        backend = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    timings = []
    for i in range(count + 20):
        if i == 20:  # the first ones load the vector extension and warm the caches
            backend_cpu, client_cpu = _process_cpu_ms(backend), time.process_time()
        started = time.perf_counter()
        search_knowledge(database, clinic_id, KB_QUERIES[i % len(KB_QUERIES)], embedder, k=3)
        if i >= 20:
            timings.append((time.perf_counter() - started) * 1000)
    return _SearchTimings(
        wall_ms=sorted(timings),
        postgres_cpu_ms=(_process_cpu_ms(backend) - backend_cpu) / count,
        client_cpu_ms=(time.process_time() - client_cpu) * 1000 / count,
    )


def bench_kb_search(infra: BenchInfra, args: argparse.Namespace) -> dict[str, Any]:
    from db.engine import Database, make_engine

    chunks = args.kb_chunks
    small = max(1, int(chunks * KB_SMALL_CLINIC_SHARE))
    vectors = _SyntheticVectors(args.kb_vectors, seed=7)
    say(f"kb_search: loading {chunks} chunks into clinic 1 and {small} into clinic 2 ({args.kb_vectors} vectors)")
    load = _load_kb_chunks(infra, {1: chunks, 2: small}, vectors)
    say(f"kb_search: COPY {load['copy_s']:.1f} s, index build + analyze {load['index_s']:.1f} s")
    database = Database(make_engine(infra.app_url, pool_size=1, max_overflow=0))
    embedder = _BenchEmbedder(_SyntheticVectors(args.kb_vectors, seed=11))
    try:
        big = _time_searches(database, 1, embedder, args.kb_queries)
        small_clinic = _time_searches(database, 2, embedder, max(100, args.kb_queries // 3))
    finally:
        database.dispose()
    total = count_rows(infra.owner_url, "SELECT count(*) FROM kb_chunks WHERE clinic_id = 1")
    small_total = count_rows(infra.owner_url, "SELECT count(*) FROM kb_chunks WHERE clinic_id = 2")
    return {
        "chunks": total,  # as loaded (counted after the load), not as asked
        "queries": len(big.wall_ms),
        "p50_ms": round(pct(big.wall_ms, 0.5), 2),
        "p99_ms": round(pct(big.wall_ms, 0.99), 2),
        "mean_ms": round(statistics.fmean(big.wall_ms), 2),
        "postgres_cpu_ms_per_query": round(big.postgres_cpu_ms, 2),
        "client_cpu_ms_per_query": round(big.client_cpu_ms, 2),
        "vectors": args.kb_vectors,
        "load_copy_s": round(load["copy_s"], 1),
        "load_index_s": round(load["index_s"], 1),
        "small_clinic_chunks": small_total,
        "small_clinic_p50_ms": round(pct(small_clinic.wall_ms, 0.5), 2),
        "small_clinic_p99_ms": round(pct(small_clinic.wall_ms, 0.99), 2),
        "small_clinic_postgres_cpu_ms_per_query": round(small_clinic.postgres_cpu_ms, 2),
    }
