"""GraphQL for agent groups (Backend.AI's scaling groups), resource presets and keypair
resource policies: types, the root query resolvers and the admin mutations, named as
Backend.AI names them (``scaling_groups``, ``resource_presets``,
``keypair_resource_policies``, ``create_scaling_group`` …). Who may use which root
field is decided in ``authz``; a domain refusal answers ``ok: false`` with ``msg``."""
from __future__ import annotations

from typing import Any

import graphene
from graphene import BigInt, Boolean, DateTime, Int, JSONString, List, String

from common.errors import Forbidden
from manager.graphql import cluster_writes as w
from manager.services.policies import DEFAULT_POLICY, policy_name_of


class ScalingGroup(graphene.ObjectType):
    name = String()
    description = String()
    is_active = Boolean()
    scheduler = String(description="queue policy of the group: fifo or drf")
    created_at = DateTime()


class ResourcePreset(graphene.ObjectType):
    name = String()
    resource_slots = JSONString(description="slot → amount (mem in bytes)")
    created_at = DateTime()


class KeyPairResourcePolicy(graphene.ObjectType):
    name = String()
    created_at = DateTime()
    max_concurrent_sessions = Int(description="0: no limit")
    total_resource_slots = JSONString(description="slot → most in use at once; {}: none")
    max_session_lifetime = BigInt(description="seconds; 0: no limit")
    idle_timeout = BigInt(description="seconds; 0: the manager's default")
    allowed_groups = List(String)


class ScalingGroupInput(graphene.InputObjectType):
    description = String()
    is_active = Boolean()
    scheduler = String()


class ResourcePresetInput(graphene.InputObjectType):
    resource_slots = JSONString()


class KeyPairResourcePolicyInput(graphene.InputObjectType):
    max_concurrent_sessions = Int()
    total_resource_slots = JSONString()
    max_session_lifetime = BigInt()
    idle_timeout = BigInt()
    allowed_groups = List(String)


_VALUES = {"group": w.group_values, "preset": w.preset_values, "policy": w.policy_values}
_WHAT = {"group": "agent group", "preset": "resource preset", "policy": "resource policy"}


def _mutations(kind: str, input_type: type[graphene.InputObjectType],
               object_type: type[graphene.ObjectType], field: str
               ) -> tuple[type[graphene.Mutation], ...]:
    """create / modify / delete mutations for one kind of row."""

    async def created(engine: Any, name: str) -> Any:
        found = await w.rows(engine, kind, name)
        return found[0] if found else None

    async def do_create(_root: Any, info: Any, name: str, props: Any) -> Any:
        values = _VALUES[kind](props)
        why = await w.create(info.context.engine, kind, w.check_name(name, _WHAT[kind]),
                             values)
        row = None if why else await created(info.context.engine, name)
        return create_cls(ok=why is None, msg=why or "success", **{field: row})

    async def do_modify(_root: Any, info: Any, name: str, props: Any) -> Any:
        why = await w.modify(info.context.engine, kind, name, _VALUES[kind](props))
        return modify_cls(ok=why is None, msg=why or "success")

    async def do_delete(_root: Any, info: Any, name: str) -> Any:
        why = await w.delete(info.context.engine, kind, name)
        return delete_cls(ok=why is None, msg=why or "success")

    def args(with_props: bool) -> type:
        attrs: dict[str, Any] = {"name": String(required=True)}
        if with_props:
            attrs["props"] = input_type(required=True)
        return type("Arguments", (), attrs)

    title = object_type.__name__
    base = {"ok": Boolean(), "msg": String()}
    create_cls = type(f"Create{title}", (graphene.Mutation,), {
        **base, field: graphene.Field(object_type), "Arguments": args(True),
        "mutate": staticmethod(do_create)})
    modify_cls = type(f"Modify{title}", (graphene.Mutation,), {
        **base, "Arguments": args(True), "mutate": staticmethod(do_modify)})
    delete_cls = type(f"Delete{title}", (graphene.Mutation,), {
        **base, "Arguments": args(False), "mutate": staticmethod(do_delete)})
    return create_cls, modify_cls, delete_cls


CreateScalingGroup, ModifyScalingGroup, DeleteScalingGroup = _mutations(
    "group", ScalingGroupInput, ScalingGroup, "scaling_group")
CreateResourcePreset, ModifyResourcePreset, DeleteResourcePreset = _mutations(
    "preset", ResourcePresetInput, ResourcePreset, "resource_preset")
(CreateKeyPairResourcePolicy, ModifyKeyPairResourcePolicy,
 DeleteKeyPairResourcePolicy) = _mutations(
    "policy", KeyPairResourcePolicyInput, KeyPairResourcePolicy, "resource_policy")


class ClusterQuery:
    """Root query fields, mixed into ``schema.Query``."""

    scaling_groups = List(ScalingGroup, is_active=Boolean())
    scaling_group = graphene.Field(ScalingGroup, name=String(required=True))
    resource_presets = List(ResourcePreset)
    resource_preset = graphene.Field(ResourcePreset, name=String(required=True))
    keypair_resource_policies = List(KeyPairResourcePolicy)
    keypair_resource_policy = graphene.Field(KeyPairResourcePolicy, name=String())

    @staticmethod
    async def resolve_scaling_groups(_root: Any, info: Any, is_active: bool | None = None
                                     ) -> list[Any]:
        return await w.rows(info.context.engine, "group", is_active=is_active)

    @staticmethod
    async def resolve_scaling_group(_root: Any, info: Any, name: str) -> Any:
        found = await w.rows(info.context.engine, "group", name)
        return found[0] if found else None

    @staticmethod
    async def resolve_resource_presets(_root: Any, info: Any) -> list[Any]:
        return await w.rows(info.context.engine, "preset")

    @staticmethod
    async def resolve_resource_preset(_root: Any, info: Any, name: str) -> Any:
        found = await w.rows(info.context.engine, "preset", name)
        return found[0] if found else None

    @staticmethod
    async def resolve_keypair_resource_policies(_root: Any, info: Any) -> list[Any]:
        return await w.rows(info.context.engine, "policy")

    @staticmethod
    async def resolve_keypair_resource_policy(_root: Any, info: Any,
                                              name: str | None = None) -> Any:
        """The caller's own policy when ``name`` is left out; a plain keypair may name
        only its own."""
        caller = info.context.caller
        async with info.context.engine.connect() as conn:
            own = (await conn.execute(policy_name_of(caller.access_key).select())
                   ).scalar_one_or_none() or DEFAULT_POLICY
        if name is not None and name != own and not caller.is_admin:
            raise Forbidden("a plain keypair can only see its own resource policy")
        found = await w.rows(info.context.engine, "policy", name or own)
        return found[0] if found else None
