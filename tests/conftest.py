"""Shared test configuration.

Tiers: tests/unit (no services), tests/integration (real PostgreSQL, Redis, Docker,
ZeroMQ), tests/e2e (a whole cluster driven by real clients). `scripts/dev test`
starts the services and exports KRAKEN_TEST_PG_URL / KRAKEN_TEST_REDIS_URL.
"""
