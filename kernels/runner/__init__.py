"""The Kraken runner: the process inside a kernel container that runs user code.

It binds three ZeroMQ sockets (see ``common.msg_runner``): input (PULL), output
(PUSH) and control (ROUTER). One I/O thread owns all sockets and PTY file
descriptors; the main thread runs query-mode user code (so SIGINT reaches it) and
batch steps. Modules:

- ``settings``  — environment-derived configuration
- ``outbox``    — the ordered output queue that wakes the I/O thread
- ``console``   — stdout/stderr writers and the ``input()`` / ``getpass`` stand-ins
- ``query``     — query mode (persistent globals) and completion
- ``batch``     — batch mode (clean → build → exec as bash commands)
- ``ptys``      — pseudo-terminal streams
- ``services``  — the image's services (Jupyter, ...), started on demand for the proxy
- ``server``    — the sockets, the dispatch table and the main loop
- ``media``     — a tiny helper user code imports to emit HTML and media items

It imports only the standard library, pyzmq, msgpack and ``common.codec``,
``common.msg_runner``, ``common.services`` and ``common.errors``, and stays compatible
with Debian bookworm's pyzmq 24.
"""
