"""Multiprocess Prometheus set-up for worker processes.

Dramatiq serves the metrics of all its worker processes from a fork of its
main process, configured by environment variables read at import time — so
whoever launches ``dramatiq`` (``medspa worker``, ``medspa dev up``, tests)
passes ``worker_metrics_env``; worker processes call
``configure_worker_metrics`` before anything imports prometheus_client.
"""

from __future__ import annotations

import os
from pathlib import Path

from medspa.settings import Settings


def _metrics_dir(settings: Settings, port: int) -> Path:
    return settings.data_dir / "metrics" / f"worker-{port}"


def worker_metrics_env(settings: Settings, *, port: int | None = None, fresh: bool = True) -> dict[str, str]:
    """Environment for launching a Dramatiq worker group whose metrics are served on ``port``."""
    port = port if port is not None else settings.worker_metrics_port
    if not port:
        return {"WORKER_METRICS_PORT": "0"}
    directory = _metrics_dir(settings, port)
    directory.mkdir(parents=True, exist_ok=True)
    if fresh:  # counters from a previous run of this group would otherwise be added to this one's
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
    # Dramatiq's middleware reads these lower-case names.
    return {
        "WORKER_METRICS_PORT": str(port),
        "dramatiq_prom_db": str(directory),
        "dramatiq_prom_port": str(port),
        "dramatiq_prom_host": settings.worker_metrics_host,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }


def configure_worker_metrics(settings: Settings) -> bool:
    if not settings.worker_metrics_port:
        return False
    for key, value in worker_metrics_env(settings, fresh=False).items():
        os.environ.setdefault(key, value)
    return True
