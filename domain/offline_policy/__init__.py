"""The offline dialogue policy: understanding by nearest labelled examples, deciding by rules, behind the
``ChatModel`` interface.

Why: with no LLM configured the product must still book, answer and hand off, and it must do so through exactly
the same path as the LLM — the same tools, the same confirmation rule, the same audit.  So this "model" reads the
messages (the patient's texts, earlier turns, and the tool results of this turn) plus the TurnContext, and answers
with tool calls or a final text, one step at a time, the way a function-calling LLM would.

Understanding (issue 14): what a message *is* comes from ``domain.nlu`` — the nearest labelled example
utterances under a local sentence-embedding model, with a confidence threshold — and, when that model is not
installed or not confident, from keyword rules.  Slots come from the deterministic parsers (``timeparse``,
``catalog``) read against the dialogue state: a bare "3" or "the 2pm one" after a list of slots is a choice,
"an hour earlier" moves the proposal, "same time on friday" keeps the appointment's time.  Rules remain only as
hard guards that must never be probabilistic: carrier keywords (handled before the model), emergencies (the
agent loop's safety screen), screening (``domain.screening``, enforced by the tool executor), the confirmation
gate (``agent_state.is_affirmative``) and injection attempts.

It is honest about being rules: when it cannot tell what the patient wants it says so and offers a person; a
message it cannot understand that carries a possible danger sign goes to staff.  Text in a message is data,
never an instruction: an "ignore your instructions" message gets a plain refusal and no tool call.

Modules, in the order a step runs: ``policy`` (the ``ChatModel``), ``view`` (what one step reads), ``decider``
(the order the layers are asked in) over ``understanding`` (what the message is), ``dialogue_state`` (the time
discussed, moved or kept), ``booking``, ``changes`` (cancel, reschedule) and ``answers`` (knowledge), with
``vocabulary`` (patterns and fixed replies), ``replies`` (reply text) and ``slots`` (times and slots).
"""

from __future__ import annotations

from domain.offline_policy.policy import NAME, OfflinePolicy

__all__ = ["NAME", "OfflinePolicy"]
