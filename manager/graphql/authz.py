"""Who may do what through the admin GraphQL API — decided here and nowhere else.

Two modes (seed 004 §2.16): an admin keypair queries and mutates everything; a plain
keypair reaches only its own keypair, sessions and folders (plus the image list it
needs to start sessions), and every mutation is refused. Root fields are checked by
``AuthorizationMiddleware`` against ``ROOT_RULES`` (deny by default); row scoping of
the owner-visible fields is done by ``owner_scope``. Nested fields only ever reach
objects that hang off an already-authorized parent (a keypair's own sessions).
Introspection is allowed for admin keypairs only (``validation_rules``).
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from graphql import ASTValidationRule, GraphQLResolveInfo
from graphql.validation import NoSchemaIntrospectionCustomRule

from common.errors import Forbidden
from manager.services.keypairs import KeypairInfo

ROOT_TYPES = frozenset({"Query", "Mutation"})


class Rule(enum.Enum):
    ADMIN = "admin"          # admin keypairs only
    OWNER = "owner"          # everyone; plain keypairs are scoped to their own rows


ROOT_RULES: dict[str, Rule] = {
    "keypair": Rule.OWNER,
    "keypairs": Rule.ADMIN,
    "compute_sessions": Rule.OWNER,
    "compute_session": Rule.OWNER,
    "compute_workers": Rule.OWNER,
    "vfolders": Rule.OWNER,
    "images": Rule.OWNER,
    "agents": Rule.ADMIN,
    "agent": Rule.ADMIN,
    "create_keypair": Rule.ADMIN,
    "modify_keypair": Rule.ADMIN,
    "delete_keypair": Rule.ADMIN,
    # agent groups, presets, resource policies (issue 10)
    "scaling_groups": Rule.ADMIN,
    "scaling_group": Rule.ADMIN,
    "resource_presets": Rule.OWNER,
    "resource_preset": Rule.OWNER,
    "keypair_resource_policies": Rule.ADMIN,
    "keypair_resource_policy": Rule.OWNER,  # a plain keypair: its own (cluster.py)
    **{f"{verb}_{kind}": Rule.ADMIN for verb in ("create", "modify", "delete")
       for kind in ("scaling_group", "resource_preset", "keypair_resource_policy")},
    "queued_sessions": Rule.ADMIN,
    "move_queued_session": Rule.ADMIN,
    "cancel_queued_session": Rule.ADMIN,
}


def check_root_field(caller: KeypairInfo, operation: str, field: str) -> None:
    """Raise Forbidden unless ``caller`` may use root ``field`` of ``operation``."""
    rule = ROOT_RULES.get(field)
    if rule is None:
        raise Forbidden(f"{field} is not available")
    if operation == "Mutation" and not caller.is_admin:
        raise Forbidden("mutations need an admin keypair")
    if rule is Rule.ADMIN and not caller.is_admin:
        raise Forbidden(f"{field} needs an admin keypair")


def owner_scope(caller: KeypairInfo, requested: str | None) -> str | None:
    """The access key to filter rows by: admins get what they asked (None = all);
    plain keypairs always get their own, and asking for another key is refused."""
    if caller.is_admin:
        return requested
    if requested is not None and requested != caller.access_key:
        raise Forbidden("a plain keypair can only see its own resources")
    return caller.access_key


class AuthorizationMiddleware:
    """graphql-core middleware applying ``check_root_field`` to every root field."""

    def resolve(self, next_: Callable[..., Any], root: Any, info: GraphQLResolveInfo,
                **args: Any) -> Any:
        parent = info.parent_type.name
        if parent in ROOT_TYPES and not info.field_name.startswith("__"):
            check_root_field(info.context.caller, parent, info.field_name)
        return next_(root, info, **args)


def validation_rules(caller: KeypairInfo, rules: list[type[ASTValidationRule]]
                     ) -> list[type[ASTValidationRule]]:
    """The validation rules for ``caller``: introspection is for admins only."""
    rules = list(rules)
    if not caller.is_admin:
        rules.append(NoSchemaIntrospectionCustomRule)
    return rules
