"""What every ``bin/`` tool shares: running its ``main`` with absl, bad input reported alike.

absl's ``app.run`` answers a bad flag with its usage text and exit code 1, and leaves extra
arguments and errors to each tool. :func:`run` gives every tool one rule instead: a bad flag,
an extra argument or a :class:`tfp_vae.errors.Error` prints one ``error: <what and the fix>``
line and exits with code 2 (or the error's own code); never a traceback. Imports nothing heavy:
every tool defines its flags from modules without TensorFlow (``bin/train`` from
:mod:`tfp_vae.config`) and imports TensorFlow in its ``main`` once they are checked, so that a
bad flag is answered at once.
"""

import sys

from absl import app, flags

from tfp_vae import errors


def fail(message, code=2):
    """Prints ``error: message`` to stderr; returns ``code`` (for ``return fail(...)``)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def parse_flags(argv):
    """absl's flag parser with bad flags and extra arguments as one ``error:`` line, exit 2."""
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:
        sys.exit(fail(f"{str(e).rstrip('.')} (see --helpfull for every flag)."))
    if len(rest) > 1:
        sys.exit(fail(f"unexpected arguments: {' '.join(rest[1:])}; flags are written "
                      f"--name=value."))
    return rest


def run(main):
    """Runs ``main()`` as the tool's entry point (see the module docstring); its return value is
    the exit code."""
    def guarded(argv):
        del argv  # parse_flags has refused any argument besides the flags
        try:
            return main()
        except errors.Error as e:
            return fail(str(e), e.exit_code)
    app.run(guarded, flags_parser=parse_flags)
