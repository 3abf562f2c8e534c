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
    import os
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


def run(main, groups=None, about=""):
    """Runs ``main()`` as the tool's entry point (see the module docstring); its return value is
    the exit code. ``groups`` (``{title: [flag names]}``) make ``--help``."""
    def guarded(argv):
        del argv  # parse_flags has refused any argument besides the flags
        try:
            return main()
        except errors.Error as e:
            return fail(str(e), e.exit_code)
    app.run(guarded, flags_parser=lambda argv: parse_flags(argv, groups, about))
