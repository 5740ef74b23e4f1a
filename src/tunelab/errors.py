"""Errors a user can act on. Each message names the file, key or value and what would be valid."""


class TunelabError(Exception):
    """Base class: the CLI prints these without a traceback."""


class ConfigError(TunelabError, ValueError):
    """A config key, value or override is not valid."""


class DataError(TunelabError, ValueError):
    """A data source, image file, class folder or manifest row is not usable."""


class ModelError(TunelabError, ValueError):
    """A backbone name, weights file or checkpoint does not fit."""


class RunError(TunelabError):
    """A run folder is in use by another process, or its files are damaged."""


class DiskFullError(TunelabError, OSError):
    """A file (checkpoint, cache) does not fit on its disk; the message says how much it needs."""


class TrainingError(TunelabError):
    """Training cannot go on: the loss became inf or nan (the message says where, and what to lower)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or, under the CLI, SIGTERM: the message says how to carry on, e.g. which run
    folder to resume (the CLI prints it and exits with 128 + ``signum``). Still a KeyboardInterrupt
    for code that catches those."""

    def __init__(self, how: str = "", signum: int = 2) -> None:
        super().__init__(how)
        self.how, self.signum = how, signum
