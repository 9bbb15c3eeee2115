"""The in-container side of Kraken: the runner package and the kernel image recipes.

``kernels.runner`` runs inside every kernel container (standard library, pyzmq,
msgpack and ``common.codec`` / ``common.msg_runner`` only); ``kernels.build``
builds the images in ``kernels/images/`` on the host without a registry.
"""
