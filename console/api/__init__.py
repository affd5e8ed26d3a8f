"""The JSON API under /api/v1: framework (``framework.py``), the endpoints by feature, the OpenAPI document."""
