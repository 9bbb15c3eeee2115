"""Kraken's shared vocabulary: ids, statuses, resource slots, errors, wire messages.

Nothing in here runs a daemon, and nothing in here imports ``manager``, ``agent``
or ``kernels``. The runner inside kernel containers imports ``common.codec`` and
``common.msg_runner`` only, so those two modules depend on ``msgpack`` alone.
"""
