"""Alembic migrations of the manager database (run through ``manager.db.migrate``)."""
