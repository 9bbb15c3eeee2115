"""The root Query and Mutation types and the schema (no automatic camel-casing).

Root resolvers only scope (``authz.owner_scope``) and call ``queries``; whether a
root field may be used at all is decided by ``authz.AuthorizationMiddleware``.
"""
from __future__ import annotations

from typing import Any

import graphene
from graphene import Boolean, List, String

from manager.graphql import cluster, queries
from manager.graphql import queue as gql_queue
from manager.graphql.authz import owner_scope
from manager.graphql.mutations import CreateKeyPair, DeleteKeyPair, ModifyKeyPair
from manager.graphql.records import (
    AgentRecord,
    ImageRecord,
    KeypairRecord,
    SessionRecord,
    VFolderRecord,
)
from manager.graphql.types import (
    Agent,
    ComputeSession,
    ComputeWorker,
    Image,
    KeyPair,
    VirtualFolder,
)
from manager.graphql.userid import UserID


class Query(cluster.ClusterQuery, graphene.ObjectType):
    keypair = graphene.Field(KeyPair, access_key=String())
    keypairs = List(KeyPair, user_id=UserID(), is_active=Boolean())
    compute_sessions = List(ComputeSession, access_key=String(), status=String())
    compute_session = graphene.Field(ComputeSession, sess_id=String())  # client: String
    compute_workers = List(ComputeWorker, sess_id=String(required=True), status=String())
    vfolders = List(VirtualFolder, access_key=String())
    agents = List(Agent, status=String())
    agent = graphene.Field(Agent, agent_id=String(required=True))
    images = List(Image)
    queued_sessions = gql_queue.QUEUED_SESSIONS

    @staticmethod
    async def resolve_keypair(_root: Any, info: Any, access_key: str | None = None
                              ) -> KeypairRecord | None:
        caller = info.context.caller
        key = owner_scope(caller, access_key) or caller.access_key
        return await info.context.loaders.keypair.load(key)  # type: ignore[no-any-return]

    @staticmethod
    async def resolve_keypairs(_root: Any, info: Any, user_id: str | int | None = None,
                               is_active: bool | None = None) -> list[KeypairRecord]:
        uid = None if user_id is None else str(user_id)
        return await info.context.loaders.reads.read(queries.list_keypairs, uid, is_active)  # type: ignore[no-any-return]

    @staticmethod
    async def resolve_compute_sessions(_root: Any, info: Any, access_key: str | None = None,
                                       status: str | None = None) -> list[SessionRecord]:
        scope = owner_scope(info.context.caller, access_key)
        return await info.context.loaders.reads.read(queries.list_sessions, scope, status)  # type: ignore[no-any-return]

    @staticmethod
    async def resolve_compute_session(_root: Any, info: Any, sess_id: str | None = None
                                      ) -> SessionRecord | None:
        scope = owner_scope(info.context.caller, None)
        if not sess_id:
            return None
        found = await info.context.loaders.reads.read(queries.find_sessions, sess_id, scope)
        return found[0] if found else None

    @staticmethod
    async def resolve_compute_workers(_root: Any, info: Any, sess_id: str,
                                      status: str | None = None) -> list[SessionRecord]:
        scope = owner_scope(info.context.caller, None)
        found = await info.context.loaders.reads.read(queries.find_sessions, sess_id,
                                                      scope, status)
        return found[:1]

    @staticmethod
    async def resolve_vfolders(_root: Any, info: Any, access_key: str | None = None
                               ) -> list[VFolderRecord]:
        scope = owner_scope(info.context.caller, access_key)
        if scope is None:
            return await info.context.loaders.reads.read(queries.list_vfolders)  # type: ignore[no-any-return]
        return await info.context.loaders.vfolders_of.load(scope)  # type: ignore[no-any-return]

    @staticmethod
    async def resolve_agents(_root: Any, info: Any, status: str | None = None
                             ) -> list[AgentRecord]:
        return await info.context.loaders.reads.read(queries.list_agents, status)  # type: ignore[no-any-return]

    @staticmethod
    async def resolve_agent(_root: Any, info: Any, agent_id: str) -> AgentRecord | None:
        found = await info.context.loaders.reads.read(queries.list_agents, None, agent_id)
        return found[0] if found else None

    @staticmethod
    async def resolve_images(_root: Any, info: Any) -> list[ImageRecord]:
        return await info.context.loaders.reads.read(queries.list_images)  # type: ignore[no-any-return]


class Mutation(graphene.ObjectType):
    create_keypair = CreateKeyPair.Field()
    modify_keypair = ModifyKeyPair.Field()
    delete_keypair = DeleteKeyPair.Field()
    create_scaling_group = cluster.CreateScalingGroup.Field()
    modify_scaling_group = cluster.ModifyScalingGroup.Field()
    delete_scaling_group = cluster.DeleteScalingGroup.Field()
    create_resource_preset = cluster.CreateResourcePreset.Field()
    modify_resource_preset = cluster.ModifyResourcePreset.Field()
    delete_resource_preset = cluster.DeleteResourcePreset.Field()
    create_keypair_resource_policy = cluster.CreateKeyPairResourcePolicy.Field()
    modify_keypair_resource_policy = cluster.ModifyKeyPairResourcePolicy.Field()
    delete_keypair_resource_policy = cluster.DeleteKeyPairResourcePolicy.Field()
    move_queued_session = gql_queue.MoveQueuedSession.Field()
    cancel_queued_session = gql_queue.CancelQueuedSession.Field()


SCHEMA = graphene.Schema(query=Query, mutation=Mutation, auto_camelcase=False)
