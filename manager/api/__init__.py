"""The REST gateway: aiohttp app, middlewares (problems, version, auth) and handlers."""
