"""The staff console: an authenticated Starlette app (JSON API under /api/v1 and server-rendered pages).

Separate from the thin webhook receiver (``webhooks/`` never imports this package).  It reads through the same
database, role and row-level security as everything else, and will call the worker's services for writes.
"""
