"""A run's folder: its lock, its recorded settings and its history, which a resumed run must
find as it left them.

* :func:`run_lock` keeps a second process from training the same run folder.
* :func:`check_resume_settings` refuses to continue a run with other settings (or none known).
* :func:`trim_history` drops the rows of ``history.csv`` that a resumed run will write again.
"""

import contextlib
import csv
import json
import os
import time

from tfp_vae import files
from tfp_vae.errors import ConfigError


def check_resume_settings(run_dir, now, identity, assumed=None):
    """Refuses to continue a run with settings other than those it was started with.

    Args:
      now: the settings of this start (``config.json``'s content: the settings and the data's
        identity).
      identity: the names of the settings that must not change
        (:meth:`tfp_vae.settings.Settings.identity`).
      assumed: the values of settings an older ``config.json`` lacks (added since; such runs
        were made with them), :data:`tfp_vae.settings.SINCE_ADDED`.
    """
    path = os.path.join(run_dir, "config.json")
    try:
        with open(path) as f:
            before = json.load(f)
        if not isinstance(before, dict) or "model" not in before:
            raise ValueError(f"it holds {type(before).__name__}, not the run's settings")
    except (OSError, ValueError) as e:
        # config.json is written (atomically) before the first checkpoint, so checkpoints without
        # it mean it was removed or damaged since: the settings cannot be checked.
        reason = "is missing" if isinstance(e, FileNotFoundError) else f"is unreadable ({e})"
        raise ConfigError(f"{run_dir} has checkpoints, but its config.json {reason}, so this "
                          f"command cannot be checked against the settings the run was started "
                          f"with. Restore config.json, or move the folder aside (or pass another "
                          f"--run) to start afresh.") from None
    before = {**(assumed or {}), **before}
    changed = [name for name in identity
               if name in before and name in now and before[name] != now[name]]
    if changed:
        def said(settings):
            return ", ".join(f"data {name[5:]} {settings[name]}" if name.startswith("data_")
                             else f"--{name}={settings[name]}" for name in changed)
        raise ConfigError(f"{run_dir} has checkpoints of a run started with {said(before)}, but "
                          f"this command asks for {said(now)}. Resume with the same settings and "
                          f"data, or start a new run with another --run (or --out_dir).")


@contextlib.contextmanager
def run_lock(run_dir):
    """Holds an exclusive lock on ``run_dir/lock`` while a run trains there.

    A second process (on this machine, or another one sharing the folder over a file system with
    POSIX locks) is refused at once, naming the holder. The kernel releases the lock when its
    process ends, however it ends, so a killed run never blocks its restart.
    """
    import fcntl
    import socket
    path = os.path.join(run_dir, "lock")
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(f"{run_dir} is being trained by {holder}. Two processes in one run "
                          f"folder would overwrite each other's checkpoints and logs: wait for it "
                          f"to finish, stop it (Ctrl-C keeps its checkpoint), or train another "
                          f"--run.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()} (started "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
    handle.flush()
    try:
        yield path
    finally:
        handle.close()


def trim_history(path, step, log_every):
    """Keeps the rows of a run's ``history.csv`` (Keras' CSVLogger) up to training step
    ``step``, where a resumed run continues, and drops a half-written last line, so that every
    logged step appears once, with the values of the run that reached it. Rows carry their step
    (older files: the epoch, each ``log_every`` steps)."""
    if not os.path.isfile(path):
        return
    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)
    if not lines:
        return
    header = next(csv.reader([lines[0]]))
    kept = [lines[0] if lines[0].endswith("\n") else lines[0] + "\n"]
    for line in lines[1:]:
        if not line.endswith("\n"):
            break  # half-written by a process that was killed
        row = next(csv.reader([line]), [])
        if len(row) != len(header):
            break
        values = dict(zip(header, row))
        try:
            row_step = int(float(values["step"])) if "step" in values else \
                (int(values["epoch"]) + 1) * log_every
        except (KeyError, ValueError):
            break
        if row_step > step:
            break
        kept.append(line)
    if len(kept) != len(lines):
        files.write_bytes_atomic(path, "".join(kept).encode())
