"""Atomic file writes (a crash never leaves a half-written file that a later run would trust) and
the checks that a place can be written, made before long work rather than after it.

Every output path goes through :func:`regular_target`: ``~`` is expanded, a symbolic link is
followed (as the shell's ``>`` does), and anything but a regular file or a missing path (a
device, a FIFO, a socket, a folder) is refused, so that a rename never replaces what is not ours.
"""

import contextlib
import glob
import os
import re
import shutil
import stat
import tempfile

from tfp_vae.errors import WriteError  # noqa: F401  (re-exported: files.WriteError)


_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def kind_of(mode):
    """What a file of ``st_mode`` ``mode`` is, in words ("a FIFO", "a folder", ...), or None for
    a regular file."""
    return next((kind for test, kind in _KINDS if test(mode)), None)


def regular_target(path, what):
    """The real path a file written to ``path`` lands on (``~`` expanded, links followed).

    Raises:
      WriteError: when that path exists and is not a regular file, naming ``what`` and its kind.
    """
    path = os.path.expanduser(os.fspath(path))
    named = f"{what}={path}" if what.startswith("--") else f"{what} {path}"
    real = os.path.realpath(path)
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return real
    except OSError as e:
        raise WriteError(f"{named} cannot be checked ({e.strerror or e}).") from None
    kind = kind_of(mode)
    if kind:
        via = f" (a link to {real})" if real != os.path.abspath(path) else ""
        raise WriteError(f"{named}{via} is {kind}, not a file; pass the name of a new or "
                         f"regular file.")
    return real


def writable_dir(path, what):
    """Creates the folder ``path`` (``~`` expanded) if needed, checks that files can be written
    in it and returns it.

    Raises:
      WriteError: naming ``what`` (e.g. ``--out_dir``), the path and the problem.
    """
    path = os.path.expanduser(os.fspath(path))
    named = f"{what}={path}" if what.startswith("--") else f"{what} {path}"
    if os.path.exists(path) and not os.path.isdir(path):
        raise WriteError(f"{named} is a file, not a folder; pass a folder (or remove the file).")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise WriteError(f"{named} cannot be written ({e.strerror or e}); pass a folder you can "
                         f"write to.") from None
    return path


def writable_file(path, what):
    """Checks, before any work, that the file ``path`` can be written: a new or regular file
    (see :func:`regular_target`), its folder writable (created if needed). Returns the real
    path to write."""
    if os.path.isdir(os.path.expanduser(os.fspath(path))):
        raise WriteError(f"{what}={path} is a folder; pass a file name (e.g. {what}=out.png).")
    real = regular_target(path, what)
    writable_dir(os.path.dirname(real), f"the folder of {what}")
    return real


def write_bytes_atomic(path, data):
    """Writes ``data`` to ``path`` (its real path: see :func:`regular_target`) through a
    temporary file in the same folder and a rename; on failure (a full disk, no permission) the
    temporary file is removed and ``path`` untouched. Returns the path written."""
    path = regular_target(path, "the output")
    remove_stale(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise WriteError(f"cannot write {path} ({e.strerror or e}); it is left as it was. Free "
                         f"disk space or fix the folder's permissions.") from None
    return path


def remove_stale(path):
    """Removes the ``path.tmp-PID`` and ``path.old-PID`` files or folders that a process killed
    while writing ``path`` left behind (only those of processes no longer running)."""
    for leftover in glob.glob(glob.escape(path) + ".tmp-*") + glob.glob(glob.escape(path)
                                                                         + ".old-*"):
        found = re.fullmatch(r".*\.(?:tmp|old)-(\d+)", leftover)
        if found and not _running(int(found.group(1))):
            if os.path.isdir(leftover) and not os.path.islink(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(leftover)


def _running(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: running
        return True
    return True


def replace_dir_atomic(tmp_dir, final_dir):
    """Moves a fully written folder ``tmp_dir`` to ``final_dir``, replacing any older one.

    A folder cannot be swapped in one rename, so the old one is first renamed aside: at every
    moment ``final_dir`` is either absent, the complete old folder, or the complete new one.
    """
    final_dir = os.fspath(final_dir)
    old = f"{final_dir}.old-{os.getpid()}"
    if os.path.exists(final_dir):
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    shutil.rmtree(old, ignore_errors=True)
    return final_dir
