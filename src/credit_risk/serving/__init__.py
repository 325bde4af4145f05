"""Serving: the BentoML service and what it is built from (model store import, API types)."""
