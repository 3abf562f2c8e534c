"""Atomic file writes: a crash never leaves a half-written file that a later run would trust."""

import os
import shutil


def write_bytes_atomic(path, data):
    """Writes ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
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
