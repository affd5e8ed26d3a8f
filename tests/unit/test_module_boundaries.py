"""Which way imports point (ARCHITECTURE.md, "Imports point one way"), read from the source with ``ast``:
every import counts, a function's late import included.  Actor modules are leaves: declared with
``worker.runtime.actor``, imported by nobody, enqueued by name — and every name enqueued is a declared actor
on the queue it was declared on."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from medspa import broker as queues
from medspa.settings import REPO_ROOT
from worker import runtime
from worker.schedule import SCHEDULE

PACKAGES = ("domain", "db", "medspa", "webhooks", "worker", "scripts", "console")

# Which of our packages each package may import (its own always).  Nothing else.
ALLOWED: dict[str, set[str]] = {
    "domain": set(),  # pure: plain data in, plain data out
    "db": {"domain"},
    "medspa": {"domain"},  # the ground floor: settings, broker, logs, metrics, secrets
    "webhooks": {"medspa", "db", "domain"},  # never worker (no LLM, no integrations), console or scripts
    "worker": {"domain", "db", "medspa"},
    "console": {"worker", "db", "domain", "medspa"},
    "scripts": {"worker", "db", "domain", "medspa", "console"},
}
ENTRY_MODULE = "worker.actors"  # what `dramatiq worker.actors` loads: it boots the process, nothing imports it


@dataclass(frozen=True)
class Source:
    module: str
    path: Path
    tree: ast.Module

    @property
    def package(self) -> str:
        return self.module.split(".")[0]


def _sources() -> list[Source]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found.append(Source(module, path, ast.parse(path.read_text(), str(path))))
    return found


SOURCES = _sources()
MODULES = {s.module for s in SOURCES}


def imported_modules(source: Source, *, by_name: bool = True) -> set[str]:
    """Our modules ``source`` imports (``from pkg import name`` counts as ``pkg.name`` when that is a module) and,
    ``by_name``, the ones it names in a string (to import later, or a process to start: ``dramatiq worker.actors``)."""
    names: set[str] = set()
    for node in ast.walk(source.tree):
        if by_name and isinstance(node, ast.Constant) and node.value in MODULES and "." in node.value:
            names.add(str(node.value))
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{source.module}: relative import"
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names} & MODULES
    return {name for name in names if name.split(".")[0] in PACKAGES}


def test_the_reader_sees_every_kind_of_import():
    assert {"domain.ports", "worker.runtime", "webhooks.app", "scripts.cli", "console.app"} <= MODULES
    code = "import worker.runtime\nfrom worker import payment_actors\ndef f():\n    from db.engine import Database\n"
    probe = Source("medspa.probe", Path("probe.py"), ast.parse(code + 'COMMANDS = ("scripts.dev",)\n'))
    assert imported_modules(probe, by_name=False) == {"worker.runtime", "worker", "worker.payment_actors", "db.engine"}
    assert imported_modules(probe) - imported_modules(probe, by_name=False) == {"scripts.dev"}


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package: str):
    wrong = sorted(
        f"{source.module} imports {name}"
        for source in SOURCES
        if source.package == package
        for name in imported_modules(source)
        if name.split(".")[0] not in ALLOWED[package] | {package}
    )
    assert wrong == []


def _actor_modules_by_decorator() -> set[str]:
    def is_actor_decorator(node: ast.expr) -> bool:
        target = node.func if isinstance(node, ast.Call) else node
        return (isinstance(target, ast.Name) and target.id == "actor") or (
            isinstance(target, ast.Attribute) and target.attr == "actor"
        )

    return {
        source.module
        for source in SOURCES
        for node in ast.walk(source.tree)
        if isinstance(node, ast.FunctionDef) and any(is_actor_decorator(d) for d in node.decorator_list)
    }


def test_actor_modules_are_the_declared_ones_and_nothing_imports_them():
    assert _actor_modules_by_decorator() == set(runtime.ACTOR_MODULES), "an actor module the runtime would not declare"
    leaves = set(runtime.ACTOR_MODULES) | {ENTRY_MODULE}  # the runtime names the actor modules it declares
    importers = sorted(
        f"{source.module} imports {name}"
        for source in SOURCES
        for name in imported_modules(source, by_name=False) & leaves
    )
    assert importers == []


def test_only_the_runtime_declares_actors_on_a_broker():
    """``@dramatiq.actor`` binds to the global broker at import (creating a default one when none is set)."""
    offenders = sorted(
        source.module
        for source in SOURCES
        if source.module != "worker.runtime"
        for node in ast.walk(source.tree)
        if (isinstance(node, ast.Attribute) and node.attr == "actor" and getattr(node.value, "id", "") == "dramatiq")
        or (isinstance(node, ast.ImportFrom) and node.module == "dramatiq" and "actor" in {a.name for a in node.names})
    )
    assert offenders == []


def _definitions() -> dict[str, runtime.ActorDefinition]:  # type: ignore[type-arg]
    found: dict[str, runtime.ActorDefinition] = {}  # type: ignore[type-arg]
    for module_name in runtime.ACTOR_MODULES:
        for definition in runtime.actor_definitions(importlib.import_module(module_name)):
            assert definition.actor_name not in found, f"two actors named {definition.actor_name}"
            found[definition.actor_name] = definition
    return found


def test_retries_are_explicit_and_only_scheduled_sweeps_never_retry():
    """An actor that sends or charges retries with a stated backoff; only the scheduler's jobs (which the next
    slot runs again, and whose sends go through the send actors) do not retry."""
    definitions = _definitions()
    scheduled = {job.actor_name for job in SCHEDULE}
    never_retried = {name for name, d in definitions.items() if d.options["max_retries"] == 0}
    assert never_retried == scheduled
    for name, definition in definitions.items():
        if name not in scheduled:
            assert {"min_backoff", "max_backoff"} <= set(definition.options), name
    senders_and_chargers = {
        "handle_inbound_event",
        "run_conversation",
        "send_outbox",
        "send_outbox_bulk",
        "handle_payment_event",
        "sync_calendar_event",
        "refund_deposit",
        "run_campaign_slice",
        "send_campaign_batch",
    }
    assert all(definitions[name].options["max_retries"] >= 3 for name in senders_and_chargers)
    with pytest.raises(TypeError, match="backoff"):
        runtime.actor(queue_name=queues.OUTBOX_QUEUE, max_retries=2)


def _queue_constant(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id.endswith("_QUEUE"):
        return str(getattr(queues, node.id))
    return None


def _by_name(source: Source) -> Iterator[tuple[str, str | None]]:
    """(actor name, queue name or None) of every call that enqueues an actor by a literal name."""
    for node in ast.walk(source.tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        first = node.args[0]
        if func in ("message_for", "enqueue", "message") and isinstance(first, ast.Constant):
            queue = _queue_constant(node.args[1]) if func == "message_for" and len(node.args) > 1 else None
            yield str(first.value), queue


def test_every_actor_enqueued_by_name_is_declared_on_that_queue():
    from worker.payments_flow import FOLLOW_UP_ACTORS
    from worker.pipeline_actors import SWEEP_ACTORS

    declared = {name: d.queue_name for name, d in _definitions().items()}
    # The sweeper hands kinds of work to its caller, which maps them to actors.
    kinds = {"worker.sweeper": SWEEP_ACTORS}
    calls = [
        (s.module, kinds[s.module].get(name, f"kind {name}") if s.module in kinds else name, queue)
        for s in SOURCES
        for name, queue in _by_name(s)
    ]
    assert len(calls) >= 20 and {m for m, _, _ in calls} >= {
        "webhooks.twilio",
        "worker.staff_takeover",
        "worker.sending",
    }
    wrong = sorted(
        f"{module}: {name} on {queue!r}"
        for module, name, queue in calls
        if name not in declared or (queue is not None and queue != declared[name])
    )
    wrong += [
        f"schedule: {j.actor_name} on {j.queue_name!r}" for j in SCHEDULE if declared.get(j.actor_name) != j.queue_name
    ]
    wrong += [
        f"by name: {name}" for name in (*FOLLOW_UP_ACTORS.values(), *SWEEP_ACTORS.values()) if name not in declared
    ]
    assert wrong == []
