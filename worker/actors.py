"""The worker process's entry point: ``dramatiq worker.actors`` (what ``medspa worker`` runs).

The one module whose import does something: it boots the process (``worker.runtime.boot_worker_process``:
the production start-up check, metrics, logging, the broker, every actor declared) so that Dramatiq finds
its broker when this module is loaded.  Nothing imports it.  The actors live in ``worker.pipeline_actors``,
``worker.payment_actors`` and ``worker.automation_actors``.
"""

from __future__ import annotations

from worker.runtime import boot_worker_process

broker = boot_worker_process()
