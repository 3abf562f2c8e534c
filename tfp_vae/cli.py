"""What every ``bin/`` tool shares: running its ``main`` with absl, bad input reported alike.

absl's ``app.run`` answers a bad flag with its usage text and exit code 1, and leaves extra
arguments and errors to each tool. :func:`run` gives every tool one rule instead: a bad flag,
an extra argument or a :class:`tfp_vae.errors.Error` prints one ``error: <what and the fix>``
line and exits with code 2 (or the error's own code); never a traceback. Imports nothing heavy:
every tool defines its flags from modules without TensorFlow (``bin/train`` from
:mod:`tfp_vae.config`) and imports TensorFlow in its ``main`` once they are checked, so that a
bad flag is answered at once.
"""

import atexit
import os
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


def exit_now():
    """Ends a tool that has finished its work, with exit code 0, skipping the interpreter's
    teardown.

    After TensorFlow, Python's teardown (collecting thousands of modules, C++ static
    destructors) takes about a second (``benchmarks/bench.py`` times ``bin/sample`` from launch
    to exit) and does nothing a finished tool needs: its files are closed by then (atomic
    writes, closed summary writers). The exit handlers still run, as at a normal exit: they
    flush logging and drain the stderr filter (:mod:`tfp_vae.quiet`). Not for a failed tool,
    which may leave buffers that only the teardown would flush, nor under a profiler or a
    debugger (``python -m cProfile bin/train ...`` writes its profile after the tool returns),
    nor on a worker of a multi-worker cluster (``TF_CONFIG``), whose peers' coordination service
    expects the normal shutdown.
    """
    if sys.getprofile() is not None or sys.gettrace() is not None or "TF_CONFIG" in os.environ:
        return
    _flush()
    atexit._run_exitfuncs()  # noqa: SLF001  what a normal exit runs; atexit has no public name for it
    _flush()
    os._exit(0)


def _flush():
    # A reader that has gone (bin/sample ... | head) must not turn a finished tool into a traceback.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def run(main):
    """Runs ``main()`` as the tool's entry point (see the module docstring); its return value is
    the exit code. A tool that succeeds ends with :func:`exit_now`."""
    def guarded(argv):
        del argv  # parse_flags has refused any argument besides the flags
        try:
            code = main()
        except errors.Error as e:
            return fail(str(e), e.exit_code)
        if not code:
            exit_now()
        return code
    app.run(guarded, flags_parser=parse_flags)
