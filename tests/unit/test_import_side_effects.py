"""Importing a module defines things and does nothing else: no broker set, no logging configured, no metrics
set up, no hooks or threads — each module is imported in a fresh interpreter, the way a script or a test
would.  The one exception is the worker process's entry point, ``worker.actors`` (what ``dramatiq
worker.actors`` loads): importing it boots the worker, which is checked here too."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

from medspa.settings import REPO_ROOT
from tests.unit.test_module_boundaries import ENTRY_MODULE, PACKAGES
from worker import runtime

# Run in a fresh interpreter: import every module of our packages but the entry point, then report what
# changed in the process's global state.
IMPORT_EVERYTHING = textwrap.dedent(
    """
    import importlib, json, logging, os, pkgutil, sys, threading
    import dramatiq.broker

    def handlers():
        loggers = [logging.getLogger()] + [
            logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
        ]
        return sorted(
            f"{logger.name}: {type(handler).__name__}"
            for logger in loggers
            for handler in logger.handlers
            if not isinstance(handler, logging.NullHandler)  # what a library adds so it never prints
        )

    env, hooks, threads = dict(os.environ), (sys.excepthook, threading.excepthook), threading.active_count()
    before, root_level = handlers(), logging.getLogger().level
    imported = []
    for package in PACKAGES:
        imported.append(package)
        importlib.import_module(package)
        for info in pkgutil.walk_packages(sys.modules[package].__path__, package + "."):
            if info.name != ENTRY_MODULE:
                importlib.import_module(info.name)
                imported.append(info.name)
    print(json.dumps({
        "imported": imported,
        "broker": type(dramatiq.broker.global_broker).__name__ if dramatiq.broker.global_broker else None,
        "new_handlers": sorted(set(handlers()) - set(before)),
        "root_level_changed": logging.getLogger().level != root_level,
        "environment_changed": sorted(set(os.environ.items()) ^ set(env.items())),
        "hooks_changed": (sys.excepthook, threading.excepthook) != hooks,
        "new_threads": threading.active_count() - threads,
        "entry_imported": ENTRY_MODULE in sys.modules,
    }))
    """
)


def _fresh_python(code: str, **env: str) -> dict:  # type: ignore[type-arg]
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("dramatiq_", "PROMETHEUS_", "WORKER_METRICS")) and key != "PYTHONPATH"
    }
    environment |= {"PYTHONPATH": str(REPO_ROOT), **env}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_importing_any_module_has_no_side_effects():
    prelude = f"PACKAGES = {PACKAGES!r}\nENTRY_MODULE = {ENTRY_MODULE!r}\n"
    found = _fresh_python(prelude + IMPORT_EVERYTHING, WORKER_METRICS_PORT="9191")
    assert len(found["imported"]) > 100 and set(runtime.ACTOR_MODULES) <= set(found["imported"])
    assert found["broker"] is None, "a Dramatiq broker was set by an import"
    assert found["new_handlers"] == [] and not found["root_level_changed"], "logging was configured by an import"
    assert found["environment_changed"] == [], "an import changed the environment (metrics set-up?)"
    assert not found["hooks_changed"], "an import replaced the exception hooks"
    assert found["new_threads"] == 0, "an import started a thread"
    assert not found["entry_imported"], f"something imports {ENTRY_MODULE}, the worker's entry point"


def test_the_worker_entry_point_boots_the_process(tmp_path):
    """What ``dramatiq worker.actors`` relies on: the import sets the broker, with our middleware and every
    actor declared on it, and configures logging and (when enabled) the multiprocess metrics."""
    code = textwrap.dedent(
        """
        import json, logging, os, sys
        assert "prometheus_client" not in sys.modules
        import dramatiq.broker
        import worker.actors
        broker = dramatiq.broker.global_broker
        print(json.dumps({
            "same_broker": broker is worker.actors.broker,
            "middleware": [type(m).__name__ for m in broker.middleware],
            "actors": sorted(broker.get_declared_actors()),
            "root_handlers": len(logging.getLogger().handlers),
            "metrics_dir": os.environ.get("PROMETHEUS_MULTIPROC_DIR"),
        }))
        """
    )
    found = _fresh_python(code, WORKER_METRICS_PORT="9191", DATA_DIR=str(tmp_path))
    assert found["same_broker"]
    assert {"BuildContainerAtBoot", "PrefetchNoMoreThanThreads", "Prometheus"} <= set(found["middleware"])
    modules = [importlib.import_module(name) for name in runtime.ACTOR_MODULES]
    declared = {definition.actor_name for module in modules for definition in runtime.actor_definitions(module)}
    assert set(found["actors"]) == declared and len(declared) >= 16
    assert found["root_handlers"] >= 1
    assert found["metrics_dir"] == str(tmp_path / "metrics" / "worker-9191")
