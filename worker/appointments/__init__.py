"""Booking, cancelling and moving appointments: the one service every caller uses.

The agent's tools (``worker/tools``), the staff commands (``scripts/appointments.py``) and the staff console
book, cancel and move through :class:`worker.appointments.service.AppointmentService`, so availability (clinic
and provider hours, closed dates, lead time, busy calendars), the exclusion constraint, screening
(``domain/screening``) and the deposit rules (``domain/appointments``) are the same for everyone.

- ``rows.py``: the typed rows and the error a caller turns into its own (a tool result, a one-line error).
- ``store.py``: the named queries on appointments, services, providers and deposits.
- ``slots.py``: availability over the database and the providers' calendars.
- ``service.py``: book, cancel, reschedule (patient) and move (staff).
- ``patient_texts.py``: the text telling a patient about a change staff made (the commands and the console).
"""
