"""User-facing errors.

Anything a user can fix (a bad config value, a missing folder, a dataset that cannot be
fetched) is raised as a `TfgenError` at the boundary where it is detected. The command-line
entry points print its message on one line and exit with status 2 instead of a traceback.
"""


class TfgenError(Exception):
    """An error the user can fix; its message names the file, key or value at fault."""


class ConfigError(TfgenError):
    """A config file or `--set` override is invalid."""


class DataError(TfgenError):
    """A dataset cannot be found, fetched or decoded."""


class RunError(TfgenError):
    """The run directory cannot be used as asked (exists, escapes, not writable)."""
