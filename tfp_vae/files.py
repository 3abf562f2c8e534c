"""Atomic file writes (a crash never leaves a half-written file that a later run would trust) and
the checks that a place can be written, made before long work rather than after it."""

import contextlib
import os
import shutil
import tempfile

from tfp_vae.errors import WriteError  # noqa: F401  (re-exported: files.WriteError)


def writable_dir(path, what):
    """Creates the folder ``path`` if needed and checks that files can be written in it.

    Raises:
      WriteError: naming ``what`` (e.g. ``--out_dir``), the path and the problem.
    """
    path = os.fspath(path)
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
    """Checks, before any work, that the file ``path`` can be written: not a folder, and its
    folder writable (created if needed)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise WriteError(f"{what}={path} is a folder; pass a file name (e.g. {what}=out.png).")
    writable_dir(os.path.dirname(os.path.abspath(path)), f"the folder of {what}")
    return path


def write_bytes_atomic(path, data):
    """Writes ``data`` to ``path`` through a temporary file in the same folder and a rename; on
    failure (a full disk, no permission) the temporary file is removed and ``path`` untouched."""
    path = os.fspath(path)
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
