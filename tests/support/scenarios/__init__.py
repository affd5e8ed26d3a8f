"""Conversation scenarios as data: the file format, two ways to run them, the checks and the scorecard.

One home for the scenario harness: ``tests/e2e/test_scenarios.py`` runs it under pytest and ``medspa eval``
(``scripts/eval.py``) runs it through a throwaway copy of the whole service against any model.

Format (one JSON or YAML file per scenario in ``tests/scenarios/``)::

    name: book-botox-tomorrow-3pm                 # unique, also the pytest id (default: the file name)
    description: why this scenario exists
    category: booking                             # one of CATEGORIES (the scorecard's rows)
    failure_class: confirmation                   # optional: one of FAILURE_CLASSES (issue 14's classes)
    held_out: true                                # optional: its messages are not NLU examples (scored apart)
    known_failure: why the offline policy fails it  # optional: an expected failure in the test suite (xfail,
                                                  #   strict); medspa eval still counts it as failed
    clinic: glow-medspa                           # clinic slug
    clock: "2027-03-02T10:00:00-08:00"            # frozen time of the first message (aware ISO)
    patient: {phone: "+14155557001", name: null, consent: opted_in}
    setup:                                        # optional rows created before the first message
      appointments:
        - {key: mine, owner: patient | other, service: neurotoxin, provider: maya-chen,
           start: "2027-03-04T15:00", status: booked}          # start is clinic-local
    turns:
      - send: botox tomorrow at 3pm               # one message (or send_all: [..] for a burst)
        advance_minutes: 0                        # optional: move the clock before this message
        setup_before: [ {appointment as in setup} ]  # optional: rows created just before this message
        expect:                                   # outcome checks: any competent model must meet them
          no_tools: [book_appointment]            #   must not be called this turn
          reply_contains: ["3"], reply_not_contains: ["booked"]    # case-insensitive
          reply_regex: "3(:00)? ?pm", reply_not_regex: "...", max_length: 320
          offline:                                # checks only the offline policy must meet (its wording,
            tools: [check_availability, propose_action]   # its exact tool sequence)
            tools_include: [propose_action]
            no_tool_calls: true
            tool_args: {check_availability: {date_from: "2027-03-03"}}   # subset of the first call's args
            tool_ok: {book_appointment: false}
            reply_contains: ["Reply YES"]
    final:
      appointments: [{service: neurotoxin, start: "2027-03-03T15:00", provider: maya-chen,
                      status: pending_deposit}]   # the patient's live appointments, exactly
      setup_status: {mine: cancelled}             # status of a setup appointment by key
      consent: opted_out
      state: handoff
      handoff_urgency: emergency
      handoff: true                               # the conversation was handed to staff (any urgency)
      pages: 1                                    # on-call pages sent (pipeline runs only)
      never_tools: [cancel_appointment]           # over the whole conversation
      profile_name: Jess Morales                  # the name on file at the end
      offline: {state: awaiting_deposit}          # offline-only final checks

Per-turn tool sequences are offline-only: ``tools``, ``tools_include``, ``tool_args``, ``tool_ok`` and
``no_tool_calls`` written directly under ``expect`` count as ``expect.offline`` (older scenario files).
Every reply is also checked to be at most 320 characters (SMS budget) unless ``max_length`` says otherwise.

Two runners produce the same ``ScenarioRun`` record, checked by the same code:
- ``run_scenario_direct``: AgentBrain(model) + DbToolExecutor on real Postgres with a frozen clock, with the
  pipeline's compliance keyword handling done in-line (STOP/HELP/START before the brain);
- ``run_scenario_stack``: the real webhook and worker (``tests.support.stack``), messages as signed Twilio
  webhooks, replies read from the fake Twilio, tool calls, tokens and latency from the audit tables.
Modules: ``model`` (categories, records, loading), ``setup`` (the starting state), ``direct`` and ``stack_runner``
(the two runners), ``checks`` and ``scorecard``.
"""

from __future__ import annotations

from tests.support.scenarios.checks import check_final, check_run, check_turn, transcript, turn_expectations
from tests.support.scenarios.direct import run_scenario_direct
from tests.support.scenarios.model import (
    CATEGORIES,
    DEFAULT_MAX_LENGTH,
    FAILURE_CLASSES,
    LIVE,
    MUST_PASS,
    OFFLINE_ONLY_KEYS,
    SCENARIO_DIR,
    ScenarioRun,
    TurnRecord,
    as_pytest_params,
    load_scenarios,
    patient_messages,
    validate_scenario,
)
from tests.support.scenarios.scorecard import ScenarioResult, format_scorecard, scorecard
from tests.support.scenarios.setup import apply_setup, clinic_id_for, ensure_client, reset_patient
from tests.support.scenarios.stack_runner import run_scenario_stack

__all__ = [
    "CATEGORIES",
    "DEFAULT_MAX_LENGTH",
    "FAILURE_CLASSES",
    "LIVE",
    "MUST_PASS",
    "OFFLINE_ONLY_KEYS",
    "SCENARIO_DIR",
    "ScenarioResult",
    "ScenarioRun",
    "TurnRecord",
    "apply_setup",
    "as_pytest_params",
    "check_final",
    "check_run",
    "check_turn",
    "clinic_id_for",
    "ensure_client",
    "format_scorecard",
    "load_scenarios",
    "patient_messages",
    "reset_patient",
    "run_scenario_direct",
    "run_scenario_stack",
    "scorecard",
    "transcript",
    "turn_expectations",
    "validate_scenario",
]
