"""A clinic as one declarative YAML file: the model, the diff against the
database, and the one-transaction apply.

Why a file: onboarding a clinic (and changing its menu, hours or policies)
must be reviewable and repeatable: the file is the source of truth, ``apply``
shows exactly what it will change and then writes all of it or nothing.

Design notes:
- Validation happens before any database access: time zones through
  ``zoneinfo``, phone numbers through ``phonenumbers`` (stored E.164), hours
  as ``HH:MM-HH:MM`` ranges, templates as valid ``str.format`` strings, and
  provider skills must name services in the same file.
- Providers and services missing from the file are *deactivated*, never
  deleted: appointments and history reference them.  Automations missing from
  the file are disabled.  SMS numbers missing from the file stop routing to
  the clinic (their directory rows are removed).
- The database writes go through the owner role (the app role only reads the
  tenant directory) with ``app.clinic_id`` set in the same transaction, since
  row-level security is FORCEd for clinic-owned tables.
Modules, in the order ``medspa clinic apply`` uses them: ``values`` (phones, zones, hour ranges), ``spec`` (the
file's model and loading), ``state`` (desired and current state), ``diff``, ``apply``; ``export`` writes a
clinic back to a file.
"""

from __future__ import annotations

from worker.clinic_config.apply import lock_slug, write_state
from worker.clinic_config.diff import Change, diff_states, number_conflicts, settings_changes
from worker.clinic_config.export import dump_yaml, state_to_file
from worker.clinic_config.spec import (
    SCREENING_CONDITIONS,
    ClinicFile,
    ContraindicationSpec,
    Policies,
    load_clinic_file,
    parse_clinic,
    parse_settings,
    settings_values,
)
from worker.clinic_config.state import SETTINGS_FIELDS, ClinicState, desired_state, read_state
from worker.clinic_config.values import DAYS, ClinicConfigError, parse_week

__all__ = [
    "DAYS",
    "SCREENING_CONDITIONS",
    "SETTINGS_FIELDS",
    "Change",
    "ClinicConfigError",
    "ClinicFile",
    "ClinicState",
    "ContraindicationSpec",
    "Policies",
    "desired_state",
    "diff_states",
    "dump_yaml",
    "load_clinic_file",
    "lock_slug",
    "number_conflicts",
    "parse_clinic",
    "parse_settings",
    "parse_week",
    "read_state",
    "settings_changes",
    "settings_values",
    "state_to_file",
    "write_state",
]
