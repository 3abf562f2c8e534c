"""TensorFlow's start-up lines, filtered as ``TF_CPP_MIN_LOG_LEVEL`` asks.

TensorFlow 2.21 logs part of its start-up through Abseil before Abseil's logging is initialised,
and such lines go to stderr whatever ``TF_CPP_MIN_LOG_LEVEL`` says: Abseil's "All log messages
before absl::InitializeLog() ..." warning, ``I0000`` lines (oneDNN, CPU features, "Could not
find cuda drivers") and, on a machine without an NVIDIA driver, ``E0000 ... failed call to
cuInit: ... UNKNOWN ERROR (303)``, which looks like a failure but only says that there is no GPU.
There is no setting that silences them (see abseil-cpp pull requests 1718 and 1957), so the
tools capture stderr at the file-descriptor level while TensorFlow is imported and finds its
devices, and write back every line the level lets through: ``I`` lines below level 1, ``W``
below 2, ``E`` below 3, and the cuInit error whenever an NVIDIA driver is installed (a GPU user
sees real errors). Anything else (Python warnings, any other text) is written back unchanged.
Imports nothing heavy.
"""

import contextlib
import os
import re
import sys
import tempfile

_RECORD = re.compile(r"^([IWEF])\d{4} ")  # Abseil's and TensorFlow's C++ log line prefix
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written " \
               "to STDERR"
_NO_GPU = re.compile(r"failed call to cuInit: .*UNKNOWN ERROR \(303\)")


def nvidia_driver_present():
    """Whether this machine has an NVIDIA kernel driver (so CUDA errors may be real)."""
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


def filter_lines(text, level, gpu_driver):
    """The lines of ``text`` that ``TF_CPP_MIN_LOG_LEVEL=level`` lets through (see the module
    docstring). A log record's continuation lines (text after it that is not a record of its
    own, a Python warning or a traceback) go with it."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        record = _RECORD.match(line)
        if record:
            severity = _SEVERITY[record.group(1)]
            dropping = severity < level or (severity == 2 and level >= 1 and not gpu_driver
                                            and bool(_NO_GPU.search(line)))
        elif line.rstrip("\n") == _ABSL_NOTICE:
            dropping = level >= 1
        elif not dropping or re.match(r"^(Traceback|\S+:\d+: \w*Warning)", line):
            dropping = False
        if not dropping:
            kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def filtered_stderr():
    """Captures everything written to file descriptor 2 (C++ and Python alike) meanwhile and
    writes back what :func:`filter_lines` keeps for the current ``TF_CPP_MIN_LOG_LEVEL``."""
    try:
        level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        level = 0
    if level <= 0:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = filter_lines(capture.read().decode(errors="replace"), level,
                                nvidia_driver_present())
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def import_tensorflow():
    """Imports TensorFlow and lists its devices (where it looks for CUDA) with its start-up
    lines filtered (:func:`filtered_stderr`); returns the module. Logical devices can still be
    configured afterwards."""
    with filtered_stderr():
        import tensorflow as tf
        tf.config.list_physical_devices()
    return tf
