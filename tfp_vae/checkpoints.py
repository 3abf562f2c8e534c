"""Checkpoints of a training run: saved on time, on request and never diverged; restored from
the newest one that reads.

* :class:`StepCheckpoint` saves every ``iter_save`` steps, at the end and on a stop request, and
  stops training on a non-finite loss or weight without saving (the last good checkpoint stays).
* :func:`stop_requests` turns Ctrl-C and SIGTERM into a request honoured between steps.
* :func:`restore_latest` restores the newest readable checkpoint (a damaged one is skipped; the
  checkpoints are found on disk, so a damaged or missing ``checkpoint`` state file loses none).
* :func:`weights_digest` fingerprints the weights, to compare runs and workers bit for bit.
"""

import contextlib
import glob
import hashlib
import logging
import os
import re
import signal
import sys
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from tfp_vae.errors import ConfigError, Diverged, WriteError

log = logging.getLogger(__name__)


class StepCheckpoint(keras.callbacks.Callback):
    """Saves a checkpoint every ``every`` optimiser steps, at ``last`` and when a stop is
    requested (Ctrl-C, SIGTERM), and stops training at ``last`` (so that a run ends at exactly
    ``--iter_max`` steps, resumed or not).

    A non-finite metric (the loss terms of the step) or weight stops training at once without
    saving: ``self.failure`` then holds a :class:`Diverged` naming the step and the last good
    checkpoint. Weights are checked before every save, so a checkpoint never holds NaN.
    """

    def __init__(self, manager, every, last, stop_requested=lambda: False):
        super().__init__()
        self.manager, self.every, self.last = manager, every, last
        self.stop_requested = stop_requested
        self.failure = None
        self.interrupted_at = None
        self.first_step_at = None  # time.time() at the end of the first call
        self.seen = None  # the step at the end of the previous call

    def on_train_begin(self, logs=None):
        self.seen = int(self.model.optimizer.iterations.numpy())

    def _diverged(self, step, what):
        self.model.stop_training = True
        first = self.seen + 1 if self.seen is not None else step
        if first < step:  # the callback sees one call of several steps
            step = f"{step} (within steps {first}-{step}, run in one call; " \
                   f"--steps_per_execution=1 names the exact step)"
        last = self.manager.latest_checkpoint
        kept = (f"The last good checkpoint, {last}, is kept; starting the same command again "
                f"resumes from it" if last else "No checkpoint had been saved yet")
        self.failure = Diverged(
            f"training diverged at step {step}: {what} became non-finite. Training stopped and "
            f"nothing after the last good checkpoint was saved. {kept}. Lower --lr, or check "
            f"the data.")

    def _unsaved(self, step, error):
        self.model.stop_training = True
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else \
            type(error).__name__
        last = self.manager.latest_checkpoint
        kept = (f"The last good checkpoint, {last}, is kept; starting the same command again "
                f"resumes from it" if last else "No checkpoint had been saved")
        self.failure = WriteError(f"could not save the checkpoint of step {step} ({first}); "
                                  f"training stopped. {kept}. Free disk space (or fix the "
                                  f"folder's permissions) first.")

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.first_step_at is None:
            self.first_step_at = time.time()
        bad = sorted(name for name, value in (logs or {}).items()
                     if not np.all(np.isfinite(np.asarray(value, np.float64))))
        if bad:
            return self._diverged(step, f"the training loss ({', '.join(bad)})")
        stop = self.stop_requested()
        if step % self.every == 0 or step >= self.last or stop:
            if not all(np.isfinite(w).all() for w in self.model.get_weights()):
                return self._diverged(step, "a model weight")
            try:
                self.manager.save(checkpoint_number=step)
            except Exception as e:  # noqa: BLE001  a full disk, a vanished folder (TF errors)
                return self._unsaved(step, e)
        if stop:
            self.interrupted_at = step
        if step >= self.last or stop:
            self.model.stop_training = True
        self.seen = step


@contextlib.contextmanager
def stop_requests(enabled=True):
    """Turns the first Ctrl-C (SIGINT) or SIGTERM into a request that training polls at the next
    step boundary (so a checkpoint is saved first); a second Ctrl-C stops at once.

    Yields a function that tells whether a stop was requested. Signal handlers can only be set in
    the main thread; elsewhere (or with ``enabled=False``) signals keep their default behaviour.
    """
    requested = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested.append(signum)
        # Printed, not logged: a signal handler must not take the locks logging holds.
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint after this step, then "
              f"stopping (Ctrl-C again stops at once, losing the steps since the last "
              f"checkpoint).", file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(requested)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def checkpoint_paths(directory):
    """The checkpoints in ``directory`` (``ckpt-N``, found by their index files), newest first.

    Found on disk rather than in TensorFlow's ``checkpoint`` state file, which a crash, a full
    disk or a hand can damage or delete while the checkpoints themselves are good."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(directory), "ckpt-*.index")):
        match = re.fullmatch(r"ckpt-(\d+)\.index", os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path[:-len(".index")]))
    return [path for _, path in sorted(found, reverse=True)]


def set_aside_damaged_state(directory):
    """Moves TensorFlow's ``checkpoint`` state file aside when it cannot be read (garbage, random
    bytes, empty), so that the checkpoint manager starts afresh instead of failing on it; the
    checkpoints themselves are found by :func:`checkpoint_paths`. Returns the new path, or None."""
    path = os.path.join(directory, "checkpoint")
    if not os.path.isfile(path):
        return None
    try:
        state = tf.train.get_checkpoint_state(directory)
        readable = state is not None and bool(state.model_checkpoint_path)
    except Exception:  # noqa: BLE001  TF raises parse errors of several types here.
        readable = False
    if readable:
        return None
    aside = f"{path}.damaged-{int(time.time())}"
    os.replace(path, aside)
    log.warning("%s was unreadable; moved it to %s and looked for the checkpoints themselves.",
                path, aside)
    return aside


def restore_latest(checkpoint, directory):
    """Restores the newest readable checkpoint in ``directory``; returns its path or None.

    TensorFlow writes a checkpoint's index file last, so a crash while saving leaves no index
    and the previous checkpoint is the newest. A checkpoint that was damaged later (disk full, a
    truncated copy) is reported and the one before it is used.
    """
    for path in checkpoint_paths(directory):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
            return path
        except Exception as e:  # noqa: BLE001  Any unreadable checkpoint (TF raises OpError,
            # IndexError, ValueError or AssertionError, depending on the damage) means: use an
            # older one; restoring it assigns every variable again.
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log.warning("checkpoint %s cannot be restored (%s); trying the one before it.", path,
                        first_line[:200])
    if checkpoint_paths(directory):
        raise ConfigError(f"no checkpoint in {directory} can be restored into this model. Move "
                          f"the folder aside to start the run afresh.")
    return None


def weights_digest(model):
    """SHA-256 of all model weights (bitwise), to compare runs and workers."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()
