"""Persistence: SQLAlchemy table definitions and the async engine."""
