"""``OfflinePolicy``: the ``ChatModel`` the offline rules implement (see the package docstring)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from domain.catalog import ServiceRef
from domain.nlu import IntentClassifier, Understanding
from domain.offline_policy.decider import _Decider
from domain.offline_policy.view import _read
from domain.ports import ChatMessage, ModelReply, ToolCall, TurnContext

NAME = "offline-rules"


# --------------------------------------------------------------------------------------------- policy
class OfflinePolicy:
    """``ChatModel`` implemented by example-based understanding and rules (see module docstring)."""

    name = NAME

    def __init__(self, services: Sequence[ServiceRef] | None = None, *, nlu: IntentClassifier | None = None) -> None:
        # Optional catalogue for matching before list_services ran; without it the policy asks the tools.
        self._services = list(services or ())
        self.nlu = nlu
        self._counter = 0
        self._understood: OrderedDict[str, Understanding] = OrderedDict()
        self._lock = threading.Lock()

    def complete(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[dict[str, Any]],
        context: TurnContext,
    ) -> ModelReply:
        view = _read(messages, tools, context)
        decision = _Decider(view, self).decide()
        if isinstance(decision, str):
            return ModelReply(content=decision, model=NAME)
        calls = []
        with self._lock:
            for name, arguments in decision:
                self._counter += 1
                calls.append(ToolCall(id=f"rule_{self._counter}", name=name, arguments=json.dumps(arguments)))
        return ModelReply(content=None, tool_calls=tuple(calls), model=NAME)

    # -- understanding
    def understand(self, text: str) -> Understanding | None:
        """The nearest-example label of ``text`` (cached), or None without an embedding model."""
        if self.nlu is None or not text.strip():
            return None
        with self._lock:
            cached = self._understood.get(text)
        if cached is not None:
            return cached
        understanding = self.nlu.classify(text)
        with self._lock:
            self._understood[text] = understanding
            while len(self._understood) > 512:
                self._understood.popitem(last=False)
        return understanding

    def ranker(self) -> Any:
        return self.nlu.similarities if self.nlu is not None else None
