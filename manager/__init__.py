"""Kraken manager: the REST gateway, the agent registry and the session scheduler."""
