"""The ``imaseg`` subcommands; each module has ``configure(parser)`` and ``run(args) -> int``."""

__all__: list[str] = []
