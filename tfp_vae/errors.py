"""The errors tfp_vae raises for things a user can fix, with the exit code of ``bin/`` tools.

Every message names the problem and the fix. ``bin/`` tools print ``error: <message>`` and exit
with ``exit_code`` instead of showing a traceback.
"""


class Error(Exception):
    """Base of every error a user can act on."""
    exit_code = 2


class ConfigError(Error, ValueError):
    """An impossible configuration (flags, TF_CONFIG, a resumed run's settings)."""


class DataError(Error, ValueError):
    """Bad or missing data; the message says what is wrong and how to fix it."""


class NotAModelError(Error, ValueError):
    """A folder that is not a tfp_vae SavedModel, or not one of the kind asked for."""


class WriteError(Error, OSError):
    """A file or folder cannot be written: a file where a folder belongs (or the reverse), no
    permission, a full disk. Nothing complete was replaced."""


class Diverged(Error, FloatingPointError):
    """Training produced a non-finite loss or weights; the last good checkpoint is kept."""
    exit_code = 3


class Interrupted(Error):
    """Training stopped on Ctrl-C or SIGTERM after saving a checkpoint."""
    exit_code = 130  # The shell's code for a process ended by SIGINT.
