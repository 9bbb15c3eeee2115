"""Keypair mutations (§2.17.1). Authorization happened before (``authz``); a domain
refusal (no such keypair, keypair in use) is reported as ``ok: false`` with ``msg``."""
from __future__ import annotations

import dataclasses
from typing import Any

import graphene
from graphene import Boolean, Int, String

from manager.graphql import queries, writes
from manager.graphql.records import KeypairRecord
from manager.graphql.types import KeyPair
from manager.graphql.userid import UserID


class KeyPairInput(graphene.InputObjectType):
    is_active = Boolean()
    is_admin = Boolean()
    resource_policy = String()
    concurrency_limit = Int()
    rate_limit = Int()
    strict_signing = Boolean()


def _props(props: Any) -> writes.KeyPairProps:
    return writes.KeyPairProps(**{k: props.get(k) for k in (
        "is_active", "is_admin", "resource_policy", "concurrency_limit", "rate_limit",
        "strict_signing")})


class CreateKeyPair(graphene.Mutation):
    class Arguments:
        user_id = UserID(required=True)
        props = KeyPairInput(required=True)

    ok = Boolean()
    msg = String()
    keypair = graphene.Field(KeyPair)

    @staticmethod
    async def mutate(_root: Any, info: Any, user_id: str, props: Any) -> CreateKeyPair:
        engine = info.context.engine
        if why := await writes.unknown_policy(engine, props.get("resource_policy")):
            return CreateKeyPair(ok=False, msg=why)
        made = await writes.insert_keypair(engine, info.context.box, str(user_id),
                                           _props(props))
        found: dict[str, KeypairRecord] = await queries.keypairs_by_key(
            engine, [made.access_key])
        # the one answer that shows the secret: it cannot be read back later
        record = dataclasses.replace(found[made.access_key], secret_key=made.secret_key)
        return CreateKeyPair(ok=True, msg="success", keypair=record)


class ModifyKeyPair(graphene.Mutation):
    class Arguments:
        access_key = String(required=True)
        props = KeyPairInput(required=True)

    ok = Boolean()
    msg = String()

    @staticmethod
    async def mutate(_root: Any, info: Any, access_key: str, props: Any) -> ModifyKeyPair:
        if why := await writes.unknown_policy(info.context.engine, props.get("resource_policy")):
            return ModifyKeyPair(ok=False, msg=why)
        done = await writes.update_keypair(info.context.engine, access_key, _props(props))
        return ModifyKeyPair(ok=done, msg="success" if done else "no such keypair")


class DeleteKeyPair(graphene.Mutation):
    class Arguments:
        access_key = String(required=True)

    ok = Boolean()
    msg = String()

    @staticmethod
    async def mutate(_root: Any, info: Any, access_key: str) -> DeleteKeyPair:
        if access_key == info.context.caller.access_key:
            return DeleteKeyPair(ok=False, msg="a keypair cannot delete itself")
        why = await writes.delete_keypair(info.context.engine, access_key)
        return DeleteKeyPair(ok=why is None, msg=why or "success")
