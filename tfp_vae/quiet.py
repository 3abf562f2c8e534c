"""TensorFlow's noise on stderr, filtered as ``TF_CPP_MIN_LOG_LEVEL`` asks.

TensorFlow 2.21 logs part of its start-up through Abseil before Abseil's logging is initialised,
and such lines go to stderr whatever ``TF_CPP_MIN_LOG_LEVEL`` says: Abseil's "All log messages
before absl::InitializeLog() ..." warning, ``I0000`` lines (oneDNN, CPU features, "Could not
find cuda drivers"). Two ``E``-level lines are not errors at all: on a machine without an NVIDIA
driver, ``failed call to cuInit: ... UNKNOWN ERROR (303)`` only says that there is no GPU, and
"oneDNN supports DT_INT32 only on platforms with AVX-512. Falling back ..." is a note about speed.
There is no setting that silences them (see abseil-cpp pull requests 1718 and 1957).

So the tools (:func:`install`) send their stderr through a small filter process for their whole
life: it writes every line through at once, except ``I`` records below level 1, ``W`` below 2,
``E`` below 3, and the two notes above (the cuInit one only without an NVIDIA driver, so that a
GPU user sees real CUDA errors), at level 1 or more. Everything else (Python warnings and
tracebacks, our ``error:`` lines, any other text) passes unchanged. A separate process, because
it forwards what it has even when the tool dies hard (an abort in TensorFlow's import, a
segfault): it reads until the last writer is gone. Imports nothing heavy.
"""

import atexit
import os
import re
import subprocess
import sys

_RECORD = re.compile(r"^([IWEF])\d{4} ")  # Abseil's and TensorFlow's C++ log line prefix
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written " \
               "to STDERR"
_NO_GPU = re.compile(r"failed call to cuInit: .*UNKNOWN ERROR \(303\)")
_SPEED_NOTE = re.compile(r"oneDNN supports DT_INT32 only on platforms with AVX-512")
# The only continuation line of a start-up record (cpu_feature_guard.cc's), dropped with it.
_CONTINUATION = re.compile(r"^To enable the following instructions: ")


class LineFilter:
    """Decides line by line what ``TF_CPP_MIN_LOG_LEVEL=level`` lets through (see the module
    docstring); ``gpu_driver``: whether an NVIDIA driver is installed."""

    def __init__(self, level, gpu_driver):
        self.level, self.gpu_driver = level, gpu_driver
        self.dropped_record = False

    def keep(self, line):
        record = _RECORD.match(line)
        if record:
            severity = _SEVERITY[record.group(1)]
            benign = self.level >= 1 and severity == 2 and (
                bool(_SPEED_NOTE.search(line))
                or (not self.gpu_driver and bool(_NO_GPU.search(line))))
            self.dropped_record = severity < self.level or benign
            return not self.dropped_record
        if line.rstrip("\n") == _ABSL_NOTICE:
            return self.level < 1
        if self.dropped_record and _CONTINUATION.match(line):
            return False
        self.dropped_record = False
        return True


def filter_lines(text, level, gpu_driver):
    """The lines of ``text`` that :class:`LineFilter` keeps."""
    keep = LineFilter(level, gpu_driver).keep
    return "".join(line for line in text.splitlines(keepends=True) if keep(line))


def nvidia_driver_present():
    """Whether this machine has an NVIDIA kernel driver (so CUDA errors may be real)."""
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


def _level():
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


# The filter process: reads its stdin line by line, writes what it keeps to its stdout.
_FILTER_PROCESS = """
import signal, sys
# Ctrl-C in a terminal reaches the whole process group: the filter outlives the tool instead,
# forwarding until the tool's end closes the pipe.
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
sys.path.insert(0, sys.argv[3])
from tfp_vae.quiet import LineFilter
keep = LineFilter(int(sys.argv[1]), sys.argv[2] == "1").keep
out = sys.stdout.buffer
for raw in sys.stdin.buffer:
    if keep(raw.decode("utf-8", "replace")):
        out.write(raw)
        out.flush()
"""


def install():
    """Sends this process's stderr (file descriptor 2: C++ and Python alike) through the filter
    process until it exits; does nothing at ``TF_CPP_MIN_LOG_LEVEL=0`` or unset."""
    level = _level()
    if level <= 0:
        return
    sys.stderr.flush()
    real = os.dup(2)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen(
        [sys.executable, "-c", _FILTER_PROCESS, str(level),
         "1" if nvidia_driver_present() else "0", package_parent],
        stdin=subprocess.PIPE, stdout=real, stderr=real, close_fds=True)
    os.dup2(child.stdin.fileno(), 2)
    child.stdin.close()

    def finish():
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(real, 2)  # the last writer to the pipe closes: the filter drains and ends
        child.wait()
        os.close(real)
    atexit.register(finish)


def import_tensorflow(tfp=True, keras=True):
    """Installs the filter (:func:`install`), imports TensorFlow without what the tools do not
    need (:func:`tfp_vae.lazy_imports.import_tensorflow`; ``tfp``, ``keras``: whether the tool
    uses TFP, Keras) and lists its devices (where it looks for CUDA); returns the module.
    Logical devices can still be configured afterwards."""
    install()
    from tfp_vae import lazy_imports
    tf = lazy_imports.import_tensorflow(tfp, keras)
    tf.config.list_physical_devices()
    return tf
