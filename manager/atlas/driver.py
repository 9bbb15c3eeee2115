"""The job driver: every manager replica runs one (DESIGN decisions 4 and 11).

A PROGRESS job is driven by the replica holding its lease (``driver``,
``driver_until``). Each replica claims unleased or expired jobs with ``FOR UPDATE SKIP
LOCKED`` and renews its leases while driving; a replica that dies lets its leases expire
and another continues from the row and the job's files. Every step is idempotent: the
session name is derived from the job id (a second create reuses the session), the run
starts once (``started_at``), its run id is kept in the row (a successor follows it).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import uuid
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from common.errors import KernelNotFound, KrakenError, ModelNotInstalled, QuotaExceeded, RunNotFound
from common.slots import parse_bytes
from common.status import SessionStatus
from kernels.models import jobfiles
from manager.atlas import progress
from manager.atlas.jobfiles import FOLDER, MOUNT, job_dir
from manager.atlas.jobs import NG, OK, PROGRESS, JobService
from manager.db.tables import atlas_accounts, atlas_jobs
from manager.replica import public_info
from manager.services.control import ExecuteSpec, SessionControl
from manager.services.images import has_gpu_slots
from manager.services.keypairs import KeypairInfo
from manager.services.sessions import CreateSpec, SessionCreator

log = logging.getLogger(__name__)
ENDED = frozenset({SessionStatus.TERMINATED, SessionStatus.ERROR, SessionStatus.CANCELLED,
                   SessionStatus.TERMINATING})
CLAIM_BATCH = 50


def session_name(job_id: uuid.UUID) -> str:
    return "atlas-" + job_id.hex[:16]


def replica_name() -> str:
    return f"{socket.gethostname()[:64]}-{os.getpid()}-{secrets.token_hex(4)}"


class JobDriver:
    def __init__(self, engine: AsyncEngine, jobs: JobService, creator: SessionCreator,
                 control: SessionControl, redis: Redis, name: str | None = None) -> None:
        self._engine = engine
        self._jobs = jobs
        self._creator = creator
        self._control = control
        self._redis = redis
        self.config = jobs.config
        self.name = name or replica_name()
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._loop = asyncio.ensure_future(self._claim_loop())

    def kick(self, _job_id: uuid.UUID | None = None) -> None:
        self._wake.set()

    async def close(self) -> None:
        """Stop driving (leases expire; another replica continues the jobs). A task whose
        cancellation a library swallowed is left after a grace period, never waited on
        forever."""
        self._closed = True
        self._wake.set()
        tasks = [t for t in (self._loop, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10.0)

    async def _claim_loop(self) -> None:
        while not self._closed:
            try:
                await self.claim()
            except Exception as e:  # an outage: try again next pass
                log.warning("atlas driver %s cannot claim jobs: %s", self.name, e)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.claim_interval):
                    await self._wake.wait()
            self._wake.clear()

    async def claim(self) -> list[uuid.UUID]:
        """Take the lease of unleased / expired PROGRESS jobs and drive them here."""
        t = atlas_jobs.c
        free = (sa.select(t.id).where(t.status == PROGRESS, sa.or_(
            t.driver.is_(None), t.driver_until < sa.func.now(), t.driver == self.name))
            .order_by(t.created_at).limit(CLAIM_BATCH).with_for_update(skip_locked=True))
        async with self._engine.begin() as conn:
            ids = list((await conn.execute(
                sa.update(atlas_jobs).where(t.id.in_(free.scalar_subquery()))
                .values(driver=self.name, driver_until=self._until())
                .returning(t.id))).scalars())
        for job_id in ids:
            if job_id not in self._tasks:
                self._tasks[job_id] = asyncio.ensure_future(self._drive(job_id))
        return ids

    def _until(self) -> Any:
        return sa.func.now() + timedelta(seconds=self.config.lease)

    async def _renew(self, job_id: uuid.UUID) -> Any:
        """Extend the lease; None when the job is gone, final or leased elsewhere."""
        t = atlas_jobs.c
        async with self._engine.begin() as conn:
            return (await conn.execute(
                sa.update(atlas_jobs).where(t.id == job_id, t.driver == self.name,
                                            t.status == PROGRESS)
                .values(driver_until=self._until()).returning(atlas_jobs))).first()

    async def _drive(self, job_id: uuid.UUID) -> None:
        try:
            await JobRun(self, job_id).run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("atlas job %s: the driver failed; retrying after its lease", job_id)
        finally:
            self._tasks.pop(job_id, None)

    async def _owner(self, account_id: uuid.UUID) -> KeypairInfo:
        async with self._engine.connect() as conn:
            key = (await conn.execute(sa.select(atlas_accounts.c.access_key).where(
                atlas_accounts.c.id == account_id))).scalar_one()
        return await self._jobs.keypair(key)

    async def end_session(self, owner: KeypairInfo, ident: str) -> None:
        """Destroy a job's session if it is still live (idempotent)."""
        with contextlib.suppress(KernelNotFound):
            await self._control.destroy(owner, ident)


class JobRun:
    """Driving one job on this replica, while the lease holds."""

    def __init__(self, driver: JobDriver, job_id: uuid.UUID) -> None:
        self.d = driver
        self.id = job_id
        self.seen = -1  # progress lines published (-1: not read yet on this replica)
        self.exit_code: int | None = None
        self.lost_at: float | None = None  # when the session stopped knowing the run
        self.runner: asyncio.Task[None] | None = None

    async def run(self) -> None:
        row = await self.d._renew(self.id)
        if row is None:
            return
        owner = await self.d._owner(row.account_id)
        name = row.session_name or session_name(self.id)
        try:
            if row.session_name is None:
                await self._set(session_name=name)
            if not row.interrupt_requested:
                await self._create(owner, row, name)
            await self._follow(owner, name)
        finally:
            if self.runner is not None:
                self.runner.cancel()

    async def _set(self, **values: Any) -> None:
        async with self.d._engine.begin() as conn:
            await conn.execute(sa.update(atlas_jobs).where(
                atlas_jobs.c.id == self.id, atlas_jobs.c.driver == self.d.name)
                .values(**values))

    async def _create(self, owner: KeypairInfo, row: Any, name: str) -> None:
        cfg = self.d.config
        while True:
            try:
                model, inst = (await self.d._jobs.catalogue()).installed(row.model)
                gpu = 0.0
                if inst.gpu == "required":
                    gpu = 1.0
                elif inst.gpu == "optional":
                    async with self.d._engine.connect() as conn:
                        gpu = 1.0 if await has_gpu_slots(conn) else 0.0
                await self.d._creator.create(owner, CreateSpec(
                    lang=inst.image, session_name=name, tag="atlas",
                    environ={"KRAKEN_ATLAS_THREADS": str(max(int(cfg.cpu), 1))},
                    cpu=cfg.cpu, mem=parse_bytes(cfg.mem), gpu=gpu,
                    mounts=((FOLDER, MOUNT),), enqueue_only=True, max_wait=cfg.max_wait))
                return
            except QuotaExceeded:  # the account's other jobs hold its sessions: wait
                await self._stage("queued", 0.0)
                if await self.d._renew(self.id) is None:
                    return
                await asyncio.sleep(cfg.poll_interval * 5)
            except (ModelNotInstalled, KrakenError) as e:
                if isinstance(e, KrakenError) and e.status >= 500 and \
                        not isinstance(e, ModelNotInstalled):
                    raise  # an outage: the lease lapses and the job is retried
                await self._finish(owner, name, {"status": NG, "error": str(e)})
                return

    async def _stage(self, stage: str, percent: float) -> None:
        await self._set(stage=stage, percent=percent)

    async def _follow(self, owner: KeypairInfo, name: str) -> None:
        while True:
            row = await self.d._renew(self.id)
            if row is None:
                await self._gone(owner, name)
                return
            if row.interrupt_requested:
                await self._finish(owner, name, {"status": NG, "error": "interrupted"})
                return
            status, reason = await self._session(owner, row)
            if status == SessionStatus.RUNNING and row.started_at is None:
                await self._start(owner, name)
            elif status == SessionStatus.RUNNING and self.runner is None:
                self._follow_run(owner, name, (row.params or {}).get("runId"))
            await self._progress(owner, row)
            result = await self._result(owner)
            if result is None and (status is None or status in ENDED
                                   or self.exit_code is not None or self._lost()):
                await asyncio.sleep(self.d.config.poll_interval)
                result = await self._result(owner) or {
                    "status": NG, "error": self._ended_reason(status, reason)}
            if result is not None:
                await self._finish(owner, name, result)
                return
            await asyncio.sleep(self.d.config.poll_interval)

    def _lost(self) -> bool:
        """The run is unknown to the session for longer than a lease: a result that did
        not appear by then will not."""
        return self.lost_at is not None and \
            asyncio.get_running_loop().time() - self.lost_at > self.d.config.lease

    def _ended_reason(self, status: SessionStatus | None, reason: str | None) -> str:
        if self.lost_at is not None and self.exit_code is None and status not in ENDED:
            return "the job's run is no longer known to its session (the agent restarted?)"
        if self.exit_code is not None:
            return f"the job's program exited with status {self.exit_code} without a result"
        return ("the job's session ended without a result: "
                f"{reason or (status.value if status else 'it no longer exists')}")

    async def _session(self, owner: KeypairInfo, row: Any
                       ) -> tuple[SessionStatus | None, str | None]:
        """The session's status and reason from its row (no agent round trip); its id
        is kept in the job, so a session that ended is still found by it."""
        ident = (row.params or {}).get("kernelId") or row.session_name
        try:
            found = await self.d._control.find(owner, ident)
        except KernelNotFound:
            return None, None
        if "kernelId" not in (row.params or {}):
            await self._set(params=atlas_jobs.c.params.op("||")(
                sa.func.jsonb_build_object("kernelId", str(found.id))))
        return SessionStatus(found.status), public_info(found.status_info)

    async def _start(self, owner: KeypairInfo, name: str) -> None:
        run_id = secrets.token_hex(8)
        async with self.d._engine.begin() as conn:
            row = (await conn.execute(sa.update(atlas_jobs).where(
                atlas_jobs.c.id == self.id, atlas_jobs.c.started_at.is_(None),
                atlas_jobs.c.driver == self.d.name,
            ).values(started_at=sa.func.now(), stage="starting",
                     params=atlas_jobs.c.params.op("||")(
                         sa.func.jsonb_build_object("runId", run_id)))
                .returning(atlas_jobs.c.id))).first()
        if row is not None:
            self._follow_run(owner, name, run_id, start=True)

    def _follow_run(self, owner: KeypairInfo, name: str, run_id: str | None,
                    start: bool = False) -> None:
        if run_id is not None:
            self.runner = asyncio.ensure_future(self._batch(owner, name, run_id, start))

    async def _batch(self, owner: KeypairInfo, name: str, run_id: str, start: bool) -> None:
        """Start the batch run (once) and follow it to its exit status."""
        installed = (await self.d._jobs.catalogue()).get(await self._model()).installed
        program = installed.entry if installed is not None else "false"
        command = f"{program} {MOUNT}/{job_dir(str(self.id))}"
        spec = ExecuteSpec("batch", "", run_id, {"exec": command, "clean": None,
                                                 "build": None}) if start else None
        try:
            while True:
                out = await self.d._control.execute(
                    owner, name, spec or ExecuteSpec("continue", "", run_id, None))
                spec = None
                if out.get("status") == "finished":
                    self.exit_code = int(out.get("exitCode") or 0)
                    return
        except RunNotFound:  # the agent restarted, or the run ended and was forgotten
            self.lost_at = asyncio.get_running_loop().time()
        except KrakenError as e:  # the agent unreachable a moment: follow it again
            log.info("atlas job %s: following its run: %s", self.id, e)
            self.runner = None

    async def _model(self) -> str:
        async with self.d._engine.connect() as conn:
            return str((await conn.execute(sa.select(atlas_jobs.c.model).where(
                atlas_jobs.c.id == self.id))).scalar_one())

    async def _progress(self, owner: KeypairInfo, row: Any) -> None:
        """New progress lines: stored first (a client told of a line reads it back in
        the job's detail), then published. A successor replica publishes only the
        latest line it finds."""
        raw = await self.d._jobs.files.read(owner, str(self.id), jobfiles.PROGRESS)
        lines = [ln for ln in (raw or b"").splitlines() if ln.strip()]
        start = max(len(lines) - 1, 0) if self.seen < 0 else self.seen
        self.seen = len(lines)
        messages = [m for m in (_progress_line(str(self.id), ln) for ln in lines[start:])
                    if m is not None]
        if messages:
            await self._stage(messages[-1]["stage"], messages[-1]["percent"])
        for message in messages:
            await progress.publish(self.d._redis, row.account_id, row.client_id, message)

    async def _result(self, owner: KeypairInfo) -> dict[str, Any] | None:
        raw = await self.d._jobs.files.read(owner, str(self.id), jobfiles.RESULT)
        if raw is None:
            return None
        try:
            return asdict(jobfiles.parse_result(raw))
        except jobfiles.JobFileError as e:
            return {"status": NG, "error": f"the job's {jobfiles.RESULT} is not valid: {e}"}

    async def _finish(self, owner: KeypairInfo, name: str, result: dict[str, Any]) -> None:
        status = result["status"]
        error = None if status == OK else str(result.get("error") or "the job failed")[:2000]
        outputs = _mapping(result.get("outputs"))
        metrics = _mapping(result.get("metrics"))
        thumb = result.get("thumbnail")
        t = atlas_jobs.c
        async with self.d._engine.begin() as conn:
            row = (await conn.execute(sa.update(atlas_jobs).where(
                t.id == self.id, t.status == PROGRESS).values(
                status=status, error=error, outputs={str(k): str(v) for k, v in outputs.items()},
                metrics={**metrics, **({"thumbnail": str(thumb)} if thumb else {})},
                percent=100.0 if status == OK else t.percent,
                stage="done" if status == OK else t.stage,
                finished_at=sa.func.now(), driver=None, driver_until=None,
            ).returning(t.account_id, t.client_id))).first()
        await self.d.end_session(owner, name)  # always: no leaked sessions
        if row is not None:
            await progress.publish(self.d._redis, row.account_id, row.client_id,
                                   progress.final_message(str(self.id), status, error))

    async def _gone(self, owner: KeypairInfo, name: str) -> None:
        """The row is final, deleted or leased elsewhere: a deleted or final job's
        session must not outlive it."""
        async with self.d._engine.connect() as conn:
            row = (await conn.execute(sa.select(atlas_jobs.c.status, atlas_jobs.c.driver)
                                      .where(atlas_jobs.c.id == self.id))).first()
        if row is None or row.status != PROGRESS:
            await self.d.end_session(owner, name)


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _progress_line(job_id: str, line: bytes) -> dict[str, Any] | None:
    """The progress message of one ``progress.jsonl`` line; None for a malformed one."""
    try:
        item = jobfiles.parse_progress_line(line.decode("utf-8", "replace"))
    except jobfiles.JobFileError:
        return None
    return progress.progress_message(job_id, item.stage, item.percent, item.message[:200])
