"""Wiring the generation product's jobs into the manager app: one call from
``build_app`` after the vfolder routes (it needs the folder service, the session
services and Redis of the contexts before it)."""
from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from manager.api.keys import CONFIG, CONTROL, CREATOR, DB, EVENTS, KEYPAIRS
from manager.api.vfolders import VFOLDERS
from manager.atlas import api_jobs, progress_ws
from manager.atlas.accounts import ACCOUNTS
from manager.atlas.api_jobs import DRIVER, JOBS
from manager.atlas.driver import JobDriver
from manager.atlas.jobfiles import JobFiles
from manager.atlas.jobs import JobService
from manager.atlas.progress import ProgressHub
from manager.atlas.progress_ws import HUB, KEEPALIVE


async def _jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG].atlas.jobs
    jobs = JobService(app[DB], config, app[KEYPAIRS], JobFiles(app[VFOLDERS], config))
    redis = app[EVENTS].client
    driver = JobDriver(app[DB], jobs, app[CREATOR], app[CONTROL], redis)
    jobs.on_created.append(driver.kick)
    hub = ProgressHub(redis, config.ws_queue)
    app[JOBS], app[DRIVER], app[HUB], app[KEEPALIVE] = jobs, driver, hub, config.keepalive
    if ACCOUNTS in app:  # a withdrawn account takes its jobs, sessions and folder with it
        app[ACCOUNTS].on_delete.append(
            lambda account: jobs.delete_account_jobs(account, driver.end_session))
    hub.start()
    if config.drive:
        driver.start()
    yield
    await driver.close()
    await hub.close()


def setup_jobs(app: web.Application) -> None:
    app.cleanup_ctx.append(_jobs_ctx)
    api_jobs.add_routes(app)
    progress_ws.add_routes(app)
