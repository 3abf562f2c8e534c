"""What every ``bin/`` tool shares: running its ``main`` with absl, bad input reported alike.

absl's ``app.run`` answers a bad flag with its usage text and exit code 1, and leaves extra
arguments and errors to each tool. :func:`run` gives every tool one rule instead: a bad flag,
an extra argument or a :class:`tfp_vae.errors.Error` prints one ``error: <what and the fix>``
line and exits with code 2 (or the error's own code); never a traceback. Imports nothing heavy:
every tool defines its flags from modules without TensorFlow (``bin/train`` from
:mod:`tfp_vae.config`) and imports TensorFlow in its ``main`` once they are checked, so that a
bad flag is answered at once.
"""

import contextlib
import logging
import os
import re
import sys

from absl import app, flags

from tfp_vae import errors


def fail(message, code=2):
    """Prints ``error: message`` to stderr; returns ``code`` (for ``return fail(...)``)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def parse_flags(argv, groups=None, about=""):
    """absl's flag parser with bad flags and extra arguments as one ``error:`` line, exit 2;
    ``--help`` (or ``-h``) prints the tool's own flags in ``groups`` and exits 0 (absl's
    ``--helpfull`` lists every flag of every module, absl's own included)."""
    if groups and any(arg in ("--help", "-h", "--helpshort") for arg in argv[1:]):
        with contextlib.suppress(BrokenPipeError):  # a reader that has gone: nothing to say
            print(short_help(argv[0], groups, about), flush=True)
        sys.exit(0)
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:
        sys.exit(fail(f"{str(e).rstrip('.')} (see --helpfull for every flag)."))
    if len(rest) > 1:
        sys.exit(fail(f"unexpected arguments: {' '.join(rest[1:])}; flags are written "
                      f"--name=value."))
    return rest


def short_help(tool, groups, about=""):
    """The tool's flags, group by group, one line each: ``--name=default`` and the first
    sentence of its help."""
    import textwrap
    lines = [f"usage: {os.path.basename(tool)} [--flag=value ...]", ""]
    if about:
        lines += [about.strip(), ""]
    grouped = {name for names in groups.values() for name in names}
    own = [flag.name for flag in flags.FLAGS.get_flags_for_module(sys.argv[0])]
    groups = {**groups, "Other": [name for name in own if name not in grouped]}
    for group, names in groups.items():
        if not names:
            continue
        lines.append(f"{group}:")
        for name in names:
            flag = flags.FLAGS[name]
            default = "" if flag.default is None else f"={flag.default_as_str.strip(chr(39))}"
            first = re.split(r"\.\s+(?=[A-Z])", flag.help)[0].rstrip(".")
            lines += textwrap.wrap(first, 100, initial_indent=f"  --{name}{default} ".ljust(30),
                                   subsequent_indent=" " * 30, max_lines=2, placeholder=" ...")
        lines.append("")
    lines.append("--helpfull lists every flag with its whole help, absl's own included.")
    return "\n".join(lines)


class _UserFormat(logging.Formatter):
    """``message`` for information, ``warning: message`` (and so on) for the rest."""

    def format(self, record):
        text = super().format(record)
        return text if record.levelno <= logging.INFO else f"{record.levelname.lower()}: {text}"


def show_messages(level=logging.INFO):
    """Shows the ``tfp_vae`` loggers' messages as the tools' output: information on stdout,
    warnings on stderr, each as a plain line. The library itself only logs (a script chooses
    what to see with :mod:`logging`)."""
    logger = logging.getLogger("tfp_vae")
    logger.setLevel(level)
    logger.propagate = False  # absl's root handler would print them a second time
    for stream, test in ((sys.stdout, lambda r: r.levelno <= logging.INFO),
                         (sys.stderr, lambda r: r.levelno > logging.INFO)):
        handler = logging.StreamHandler(stream)
        handler.addFilter(test)
        handler.setFormatter(_UserFormat("%(message)s"))
        logger.addHandler(handler)


class _StdoutOrNothing:
    """``sys.stdout`` that, once its reader has gone (``bin/train ... | head -1``), sends the
    rest of the output nowhere instead of raising BrokenPipeError in the middle of training.

    Python ignores SIGPIPE, so every later write to a closed pipe raises; Keras' progress bar
    and the loggers write on every log interval. On the first such error, the stdout file
    descriptor is pointed at the null device and the work goes on."""

    def __init__(self, stream):
        self._stream = stream

    def _guard(self, method, *args):
        try:
            return getattr(self._stream, method)(*args)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
            return getattr(self._stream, method)(*args)

    def write(self, text):
        return self._guard("write", text)

    def flush(self):
        return self._guard("flush")

    def __getattr__(self, name):
        return getattr(self._stream, name)


def run(main, groups=None, about=""):
    """Runs ``main()`` as the tool's entry point (see the module docstring); its return value is
    the exit code. ``groups`` (``{title: [flag names]}``) make ``--help``."""
    def guarded(argv):
        del argv  # parse_flags has refused any argument besides the flags
        sys.stdout = _StdoutOrNothing(sys.stdout)
        show_messages()
        try:
            return main()
        except errors.Error as e:
            return fail(str(e), e.exit_code)
    app.run(guarded, flags_parser=lambda argv: parse_flags(argv, groups, about))
