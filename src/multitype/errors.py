"""Exception types. A ``UserError`` is something the user can fix: the CLI prints
its message as one ``error: ...`` line and exits 2, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input, usage or environment that the user can fix (exit code 2)."""

    exit_code = 2


class ConfigError(UserError):
    """One or more invalid config values; the message lists every problem."""


class DataError(UserError):
    """Input data that cannot be used as it is (names file, row or field)."""


class StorageError(UserError):
    """A storage root, key or remote that cannot be used (names the path)."""


class ModelError(UserError):
    """A model name, checkpoint or hyperparameter that cannot be used."""


class Interrupted(Exception):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint (exit 143)."""

    exit_code = 143


class AwsError(UserError):
    """An AWS request that cannot be made or was refused: credentials, permissions, a bad request (names it)."""


class RegistryError(UserError):
    """A registry name, version, stage or index file that cannot be used (names it)."""
