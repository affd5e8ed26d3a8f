"""The console's read queries, one module per feature: named statements at the top, typed rows out.

Each runs inside the request's tenant scope (row-level security bounds it to the clinic).  ``provider_id``
arguments narrow a provider's view to their own schedule and patients (``domain.staff_access.PatientReach``):
a patient is "theirs" when they have an appointment with that provider.
"""
