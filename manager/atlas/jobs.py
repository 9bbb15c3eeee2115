"""The job service: creating, reading, listing, deleting and interrupting jobs of an
account. Sessions are reached only through the driver (manager.atlas.driver), files only
through the ``atlas`` folder (manager.atlas.jobfiles)."""
from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from common.errors import AuthenticationFailed, Forbidden, ItemNotFound
from manager.atlas import paging
from manager.atlas.catalogue import LABEL, Catalogue, Model, load_known
from manager.atlas.form import JobFields, request_json
from manager.atlas.identity import Account
from manager.atlas.jobfiles import JobFiles
from manager.config import AtlasJobsConfig
from manager.db.tables import atlas_accounts, atlas_jobs
from manager.services.images import labelled_images
from manager.services.keypairs import KeypairInfo, KeypairStore

log = logging.getLogger(__name__)
PROGRESS, OK, NG = "PROGRESS", "OK", "NG"
TUTORIAL_STATUS = {PROGRESS: "progress", OK: "success", NG: "fail"}
HISTORY_STATUS = {PROGRESS: "running", OK: "completed", NG: "failed"}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class JobService:
    def __init__(self, engine: AsyncEngine, config: AtlasJobsConfig, keypairs: KeypairStore,
                 files: JobFiles) -> None:
        self._engine = engine
        self.config = config
        self._keypairs = keypairs
        self.files = files
        self._known = load_known()
        self.on_created: list[Callable[[uuid.UUID], Awaitable[None] | None]] = []

    async def catalogue(self) -> Catalogue:
        async with self._engine.connect() as conn:
            found = await labelled_images(conn, LABEL)
        return Catalogue.build(self._known, found, self.config.limits)

    async def keypair(self, access_key: str) -> KeypairInfo:
        info = await self._keypairs.get(access_key)
        if info is None or not info.is_active:
            raise AuthenticationFailed("the account's keypair is missing or inactive")
        return info

    # ---- create ------------------------------------------------------------------------

    async def create(self, account: Account, model: Model, fields: JobFields, video: Path
                     ) -> dict[str, Any]:
        """Store the input, then the row; a failure after the files were written removes
        them. The driver picks the job up (this replica at once, others on their next
        claim pass)."""
        owner = await self.keypair(account.access_key)
        job_id = uuid.uuid4()
        input_name = "input.mp4"
        await self.files.ensure_folder(owner)
        await self.files.write_job(owner, str(job_id), video, input_name,
                                   request_json(str(job_id), model.name, fields, input_name))
        try:
            async with self._engine.begin() as conn:
                await conn.execute(sa.insert(atlas_jobs).values(
                    id=job_id, account_id=account.id, model=model.name,
                    item_name=fields.item_name, client_id=fields.client_id,
                    params={"epoch": fields.epoch, "resize": fields.resize,
                            "input": f"input/{input_name}"}))
                created = (await conn.execute(sa.select(atlas_jobs.c.created_at).where(
                    atlas_jobs.c.id == job_id))).scalar_one()
                ahead = (await conn.execute(sa.select(sa.func.count()).where(
                    atlas_jobs.c.status == PROGRESS, atlas_jobs.c.started_at.is_(None),
                    atlas_jobs.c.created_at < created))).scalar_one()
        except BaseException:
            await self.files.remove_job(owner, str(job_id))
            raise
        for hook in self.on_created:
            with contextlib.suppress(Exception):
                if (pending := hook(job_id)) is not None:
                    await pending
        return {"requestId": str(job_id), "jobId": str(job_id), "queueSize": str(ahead),
                "trainingTimePerJob": model.training_time}

    # ---- read --------------------------------------------------------------------------

    async def _row(self, job_id: str) -> Any:
        try:
            ident = uuid.UUID(job_id)
        except ValueError:
            raise ItemNotFound(f"no item {job_id[:64]!r}") from None
        query = sa.select(atlas_jobs, atlas_accounts.c.nickname).join(
            atlas_accounts, atlas_accounts.c.id == atlas_jobs.c.account_id
        ).where(atlas_jobs.c.id == ident)
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first()

    async def owned(self, account: Account, job_id: str) -> Any:
        """The caller's job; another account's is 404 (its existence is not revealed)."""
        row = await self._row(job_id)
        if row is None or row.account_id != account.id:
            raise ItemNotFound(f"no item {job_id[:64]!r}")
        return row

    async def detail(self, account: Account, job_id: str) -> dict[str, Any]:
        row = await self.owned(account, job_id)
        model = (await self.catalogue()).get(row.model)
        return {
            "requestId": str(row.id), "jobId": str(row.id), "itemName": row.item_name,
            "Status": row.status, "status": row.status,
            "jobStatus": TUTORIAL_STATUS[row.status],
            "modelId": str(model.id), "modelName": model.name, "model": model.name,
            "uploaderId": str(row.account_id), "uploaderNickname": row.nickname,
            "createdAt": _iso(row.created_at), "requestedAt": _iso(row.created_at),
            "startedAt": _iso(row.started_at), "finishedAt": _iso(row.finished_at),
            "stage": row.stage, "percent": row.percent, "error": row.error,
            "outputs": row.outputs, "metrics": row.metrics,
        }

    async def list_mine(self, account: Account, model: Model, q: paging.PageQuery
                        ) -> dict[str, Any]:
        t = atlas_jobs.c
        where = [t.account_id == account.id, t.model == model.name]
        key = sa.tuple_(t.created_at, t.id)
        if q.cursor is not None:
            after = sa.tuple_(sa.literal(q.cursor.created_at), sa.literal(q.cursor.id))
            where.append(key < after if q.newest_first else key > after)
        order = (t.created_at.desc(), t.id.desc()) if q.newest_first else (t.created_at, t.id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(t.id, t.status, t.model, t.item_name,
                                                 t.created_at, t.stage, t.percent)
                                       .where(*where).order_by(*order)
                                       .limit(q.limit + 1))).all()
        more = len(rows) > q.limit
        rows = rows[:q.limit]
        cursor = paging.encode(paging.Cursor(rows[-1].created_at, rows[-1].id)) \
            if more else None
        return {"items": [{"requestId": str(r.id), "status": r.status, "model": r.model,
                           "modelId": str(model.id), "itemName": r.item_name,
                           "createdAt": _iso(r.created_at), "stage": r.stage,
                           "percent": r.percent} for r in rows],
                "hasNextItem": more, "nextCursor": cursor}

    async def history(self, account: Account, limit: int, offset: int) -> dict[str, Any]:
        t = atlas_jobs.c
        async with self._engine.connect() as conn:
            total = (await conn.execute(sa.select(sa.func.count()).where(
                t.account_id == account.id))).scalar_one()
            rows = (await conn.execute(sa.select(atlas_jobs).where(t.account_id == account.id)
                                       .order_by(t.created_at.desc(), t.id.desc())
                                       .limit(limit).offset(offset))).all()
        items = []
        for r in rows:
            item: dict[str, Any] = {"id": str(r.id), "timestamp": _iso(r.created_at),
                                    "workflow": r.model, "status": HISTORY_STATUS[r.status],
                                    "itemName": r.item_name}
            if r.status == OK:
                item["result_url"] = f"/atlas/item/download/{r.id}"
            elif r.status == NG:
                item["error_message"] = r.error
            items.append(item)
        return {"history": items, "total_count": total, "page": offset // limit + 1,
                "page_size": limit}

    # ---- delete / interrupt ------------------------------------------------------------

    async def _mine_or_403(self, account: Account, job_id: str) -> Any:
        row = await self._row(job_id)
        if row is None:
            raise ItemNotFound(f"no item {job_id[:64]!r}")
        if row.account_id != account.id:
            raise Forbidden("this item belongs to another account")
        return row

    async def request_interrupt(self, account: Account, job_id: str) -> Any:
        """Flag the job; the replica driving it ends its session and marks it NG."""
        row = await self._mine_or_403(account, job_id)
        async with self._engine.begin() as conn:
            await conn.execute(sa.update(atlas_jobs).where(
                atlas_jobs.c.id == row.id, atlas_jobs.c.status == PROGRESS,
            ).values(interrupt_requested=True))
        return row

    async def delete(self, account: Account, job_id: str,
                     end_session: Callable[[KeypairInfo, str], Awaitable[None]]) -> None:
        """Stop the job (no new session starts), end its session, remove its files, then
        its row: each step idempotent, so a repeated or concurrent delete converges."""
        row = await self.request_interrupt(account, job_id)
        owner = await self.keypair(account.access_key)
        if row.session_name:
            await end_session(owner, row.session_name)
        await self.files.remove_job(owner, str(row.id))
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(atlas_jobs).where(atlas_jobs.c.id == row.id))

    async def delete_account_jobs(self, account: Account,
                                  end_session: Callable[[KeypairInfo, str], Awaitable[None]]
                                  ) -> None:
        """AccountService.on_delete: every job, its session and the ``atlas`` folder."""
        async with self._engine.connect() as conn:
            ids = (await conn.execute(sa.select(atlas_jobs.c.id).where(
                atlas_jobs.c.account_id == account.id))).scalars().all()
        for job_id in ids:
            with contextlib.suppress(ItemNotFound):
                await self.delete(account, str(job_id), end_session)
        owner = await self._keypairs.get(account.access_key)
        if owner is not None:
            with contextlib.suppress(Exception):
                await self.files.service.delete(owner, "atlas")
