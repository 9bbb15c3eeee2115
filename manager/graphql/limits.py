"""How much one GraphQL document may ask for, measured before it is validated or run.

One pass over the parsed document counts, per operation and with fragments expanded:

* ``fields``  — field selections (what validation and execution walk);
* ``aliases`` — aliased selections (each one re-runs its resolver: 3,050 aliases of
  ``images`` once took 4.5 s);
* ``depth``   — nesting of fields (introspection subtrees are not counted: the standard
  introspection query nests ``ofType`` eight deep; their cost still counts);
* ``cost``    — the estimated number of values produced: a field costs 1 per parent
  value, and a list field multiplies what is below it by its estimated size.

Fragments are measured once each and reused (a fragment spread twice counts twice but
costs one walk), so a "fragment bomb" is measured in linear time; a fragment cycle
measures as empty and is then refused by the standard validation rules. The limits come
from ``manager.config.GraphQLConfig`` (docs/admin.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from graphql import (
    GraphQLError,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    SchemaMetaFieldDef,
    TypeMetaFieldDef,
    TypeNameMetaFieldDef,
)
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from manager.config import GraphQLConfig

INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})
# lists whose size is known from the schema itself, not estimated
FIXED_LIST_SIZES: dict[tuple[str, str], int] = {
    ("ComputeSession", "workers"): 1,  # a session has one container (the master) today
    ("Image", "resource_limits"): 3,  # cpu, mem, cuda.device
}


@dataclass(frozen=True, slots=True)
class QueryStats:
    fields: int = 0
    aliases: int = 0
    depth: int = 0
    cost: int = 0

    def __add__(self, other: QueryStats) -> QueryStats:
        return QueryStats(self.fields + other.fields, self.aliases + other.aliases,
                          max(self.depth, other.depth), self.cost + other.cost)


def introspection_list_sizes(schema: GraphQLSchema) -> dict[tuple[str, str], int]:
    """Average sizes of the introspection lists of ``schema`` (it is small and fixed)."""
    types = list(schema.type_map.values())
    objects = [t for t in types if isinstance(t, GraphQLObjectType)]
    fields = [f for t in objects for f in t.fields.values()]
    per_type = -(-len(fields) // max(1, len(objects)))
    per_field = max(1, -(-sum(len(f.args) for f in fields) // max(1, len(fields))))
    return {("__Schema", "types"): len(types), ("__Schema", "directives"):
            len(schema.directives), ("__Type", "fields"): per_type,
            ("__Type", "inputFields"): per_type, ("__Type", "enumValues"): per_type,
            ("__Type", "interfaces"): 1, ("__Type", "possibleTypes"): per_type,
            ("__Field", "args"): per_field, ("__Directive", "args"): per_field,
            ("__Directive", "locations"): per_type}


class _Measure:
    """Stats of every operation of one document (fragments measured once, memoized)."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, list_size: int
                 ) -> None:
        self._schema = schema
        self._list_size = list_size
        self._sizes = {**introspection_list_sizes(schema), **FIXED_LIST_SIZES}
        self._fragments = {d.name.value: d for d in document.definitions
                           if isinstance(d, FragmentDefinitionNode)}
        self._done: dict[str, QueryStats] = {}
        self._active: set[str] = set()

    def operation(self, node: OperationDefinitionNode) -> QueryStats:
        root = self._schema.get_root_type(node.operation)
        return self._selections(node.selection_set, root)

    def _selections(self, node: SelectionSetNode | None, parent: GraphQLNamedType | None
                    ) -> QueryStats:
        total = QueryStats()
        for sel in node.selections if node is not None else ():
            if isinstance(sel, FieldNode):
                total += self._field(sel, parent)
            elif isinstance(sel, InlineFragmentNode):
                cond = sel.type_condition
                inner = self._schema.get_type(cond.name.value) if cond else parent
                total += self._selections(sel.selection_set, inner)
            elif isinstance(sel, FragmentSpreadNode):
                total += self._fragment(sel.name.value)
        return total

    def _fragment(self, name: str) -> QueryStats:
        if name in self._done:
            return self._done[name]
        node = self._fragments.get(name)
        if node is None or name in self._active:  # unknown or a cycle: validation says so
            return QueryStats()
        self._active.add(name)
        stats = self._selections(node.selection_set,
                                 self._schema.get_type(node.type_condition.name.value))
        self._active.discard(name)
        self._done[name] = stats
        return stats

    def _field(self, node: FieldNode, parent: GraphQLNamedType | None) -> QueryStats:
        name = node.name.value
        out_type = self._field_type(parent, name)
        size, named = self._unwrap(parent, name, out_type)
        below = self._selections(node.selection_set, named)
        depth = 0 if name in INTROSPECTION_ROOTS else (1 + below.depth)
        return QueryStats(1 + below.fields, int(node.alias is not None) + below.aliases,
                          depth, size + size * below.cost)

    def _field_type(self, parent: GraphQLNamedType | None, name: str
                    ) -> GraphQLOutputType | None:
        if name == "__typename":
            return TypeNameMetaFieldDef.type
        if parent is self._schema.query_type and name in INTROSPECTION_ROOTS:
            return (SchemaMetaFieldDef if name == "__schema" else TypeMetaFieldDef).type
        field = getattr(parent, "fields", {}).get(name)
        return None if field is None else field.type

    def _unwrap(self, parent: GraphQLNamedType | None, name: str,
                out_type: GraphQLOutputType | None) -> tuple[int, GraphQLNamedType | None]:
        """(how many values the field yields per parent value, its named type)."""
        size = 1
        while isinstance(out_type, (GraphQLNonNull, GraphQLList)):
            if isinstance(out_type, GraphQLList):
                key = (parent.name if parent is not None else "", name)
                size *= self._sizes.get(key, self._list_size)
            out_type = out_type.of_type
        return size, out_type if isinstance(out_type, GraphQLNamedType) else None


def measure(schema: GraphQLSchema, document: DocumentNode, list_size: int
            ) -> dict[str, QueryStats]:
    """Stats of each operation of ``document``, by name (``""`` for an anonymous one)."""
    m = _Measure(schema, document, list_size)
    return {(d.name.value if d.name else ""): m.operation(d) for d in document.definitions
            if isinstance(d, OperationDefinitionNode)}


def _limit_errors(name: str, stats: QueryStats, limits: GraphQLConfig) -> list[str]:
    what = f"the operation {name!r}" if name else "the query"
    checks = ((stats.fields, "max_fields", "field selections"),
              (stats.aliases, "max_aliases", "aliases"),
              (stats.depth, "max_depth", "levels of nesting"),
              (stats.cost, "max_cost", f"estimated cost (a list counts {limits.list_size} "
                                        "items)"))
    return [f"{what} has {value} {label} with fragments expanded; the limit is "
            f"{getattr(limits, key)} (graphql.{key})"
            for value, key, label in checks if value > getattr(limits, key)]


def check_limits(schema: GraphQLSchema, document: DocumentNode, limits: GraphQLConfig
                 ) -> list[GraphQLError]:
    """One error per limit an operation of ``document`` exceeds (none: within limits)."""
    try:
        stats = measure(schema, document, limits.list_size)
    except RecursionError:
        return [GraphQLError("the query nests fragments too deeply")]
    return [GraphQLError(message) for name, s in stats.items()
            for message in _limit_errors(name, s, limits)]
