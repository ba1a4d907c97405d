"""Sub-commands of the ``tadp`` command line; each module exposes ``register(subparsers)``."""
