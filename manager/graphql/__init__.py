"""The admin GraphQL API (seed 004 §2.16–§2.20): types, resolvers, authorization, loaders.

GraphQL types live here, SQL tables in ``manager.db.tables``; resolvers call the small
query functions of ``manager.graphql.queries`` (through per-request batch loaders) and
authorization is decided in ``manager.graphql.authz`` alone.
"""
