"""The Keras callbacks of a training run: sample grids, the history file, a validation curve and
a TensorBoard board on the global step.

Checkpoints and stops are :class:`tfp_vae.guard.StepCheckpoint`'s. The board is written by hand
(:class:`StepBoard`) because Keras' ``TensorBoard`` callback logs epoch summaries against the
epoch index while everything else (samples, evaluation) is logged against the training step, so
the two cannot be read together.
"""

import csv
import io
import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tfp_vae import files, images

# TensorBoard groups charts by the tag's first component.
CLASSIFIER_TERMS = ("ce", "acc")


def board_tag(term):
    """The TensorBoard tag of a reported term: ``objective/loss`` (what training minimises),
    ``bound/nelbo``, ``bound/kl``, ..., ``classifier/ce``, ``classifier/acc``."""
    if term == "loss":
        return "objective/loss"
    return f"{'classifier' if term in CLASSIFIER_TERMS else 'bound'}/{term}"


def write_grid(model, path, seed):
    """Writes ``model.sample_grid(seed)`` as a PNG at ``path``."""
    pictures, rows, cols = model.sample_grid(seed)
    return images.write_png(path, images.tile(np.asarray(pictures), rows, cols,
                                              *model.image_shape))


class SampleGrids(keras.callbacks.Callback):
    """Writes the model's sample grid to ``<folder>/step=NNNNNNN.png`` every ``every`` steps and
    at the last step (:meth:`close`), so that a long run can be watched (the reference checks
    the FSVAE's grid every 10k steps), and to TensorBoard (tag ``samples/grid``, at the step)
    when ``log_dir`` is given."""

    def __init__(self, folder, every, seed, log_dir=None):
        super().__init__()
        self.folder, self.every, self.seed = folder, every, seed
        self.log_dir = log_dir
        self.writer = None
        self.last_written = None

    def _write(self, step):
        path = write_grid(self.model, os.path.join(self.folder, f"step={step:07d}.png"),
                          self.seed)
        self.last_written = step
        if self.log_dir:
            if self.writer is None:
                self.writer = tf.summary.create_file_writer(self.log_dir)
            with self.writer.as_default():
                tf.summary.image("samples/grid", tf.io.decode_png(tf.io.read_file(path))[None],
                                 step=step)
            self.writer.flush()

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step % self.every == 0:
            self._write(step)

    def close(self):
        """At the end of the run (not of each ``fit`` call): the last step's grid, if not yet
        written, and the board closed. Nothing to draw if no ``fit`` ever ran (the run stopped
        on an error before training)."""
        model = getattr(self, "model", None)
        step = None if model is None else int(model.optimizer.iterations.numpy())
        if self.last_written is not None and step is not None and step != self.last_written:
            self._write(step)
        if self.writer is not None:
            self.writer.close()


class Validation(keras.callbacks.Callback):
    """Adds ``val_<term>`` to every epoch's logs: the mean of each term of the model's
    ``loss_and_terms`` (the negative ELBO and its parts; the SSVAE's cross-entropy and accuracy)
    on a fixed held-out batch with a fixed seed, so that the curve moves only with the weights.

    Must come before the callbacks that write the logs (history, TensorBoard); a few
    milliseconds per epoch for 1,000 images, taken ``chunk`` at a time.

    Args:
      batch: the held-out data in the structure ``loss_and_terms`` takes (images, or ``(images,
        labels)`` for the models with labels).
      seed: the run's seed.
    """

    def __init__(self, batch, seed, chunk=100):
        super().__init__()
        data = tf.data.Dataset.from_tensor_slices(batch).batch(chunk)
        # Chunks of about a training batch, so that memory stays that of a training step
        # (the IWAE objective holds all its samples of every image at once).
        self.chunks = list(data)
        self.seed = tf.constant([seed, 0x5EED], tf.int32)
        self._terms = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self._terms is None:
            self._terms = tf.function(self.model.loss_and_terms,
                                      autograph=False)  # no Python control flow on tensors
        parts = [self._terms(chunk, tf.random.experimental.stateless_fold_in(self.seed, i))
                 for i, chunk in enumerate(self.chunks)]
        # The objective of each chunk is its mean; the chunks are of equal size but the last.
        sizes = [len(next(iter(terms.values()))) for _, terms in parts]
        logs["val_loss"] = float(np.average([float(loss) for loss, _ in parts], weights=sizes))
        for name in parts[0][1]:
            logs[f"val_{name}"] = float(tf.reduce_mean(tf.concat([p[1][name] for p in parts], 0)))


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the lowest ``val_nelbo`` so far (the validation split's bound, from
    :class:`Validation`) in ``<folder>/best-<step>``, a checkpoint of the model's weights, named
    with its step and value in ``<folder>/best.json``; with ``patience`` (steps), stops
    training once ``val_nelbo`` has not improved for that many steps (early stopping), counted
    from step ``not_before`` at the earliest (the end of the KL warm-up: the VampPrior paper's
    code restarts the count until then).

    Written by hand because Keras' ``EarlyStopping`` holds its best weights and its count in
    memory: a resumed run would start them afresh. Here the state is on disk, written after the
    weights (so it never names weights that are not there); a resumed run reads it and, seeing
    the same values at the same steps, stops where the uninterrupted run stops.
    """

    def __init__(self, folder, patience=0, not_before=0):
        super().__init__()
        self.folder, self.patience, self.not_before = folder, patience, not_before
        self.path = os.path.join(folder, "best.json")
        self.manager = None  # over the model's weights, once the model is set
        self.state = {"step": None, "val_nelbo": None, "stopped_at": None}
        if os.path.isfile(self.path):
            with open(self.path) as f:
                self.state.update(json.load(f))

    @property
    def stopped_at(self):
        """The step early stopping ended training at, or None."""
        return self.state["stopped_at"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_nelbo")
        if value is None:
            return
        step = int(self.model.optimizer.iterations.numpy())
        best = self.state["val_nelbo"]
        if best is None or value < best:
            if self.manager is None:
                # Two kept: the manager deletes the older one as it saves, before best.json
                # names the new one, so a kill in between must find the one it still names.
                self.manager = tf.train.CheckpointManager(
                    tf.train.Checkpoint(weights=list(self.model.weights)), self.folder,
                    max_to_keep=2, checkpoint_name="best")
            self.manager.save(checkpoint_number=step)
            self.state.update(step=step, val_nelbo=float(value))
            self._save()
        elif self.patience and step - max(self.state["step"], self.not_before) >= self.patience:
            self.state["stopped_at"] = step
            self._save()
            self.model.stop_training = True

    def _save(self):
        files.write_bytes_atomic(self.path, json.dumps(self.state, indent=1).encode())

    def restore(self, model):
        """Loads the best weights into ``model``; returns their step (None: none kept)."""
        if self.state["step"] is None:
            return None
        path = os.path.join(self.folder, f"best-{self.state['step']}")
        # Every weight restored; the manager's save counter in the file is not a weight, which
        # expect_partial says (else TensorFlow warns of it when the checkpoint is collected).
        restored = tf.train.Checkpoint(weights=list(model.weights)).read(path)
        restored.assert_existing_objects_matched().expect_partial()
        return self.state["step"]


class HistoryCSV(keras.callbacks.Callback):
    """``history.csv``: one row per log interval, keyed by the training ``step`` it was logged at
    (first column), then every term of the logs, sorted; a resumed run appends (after
    :func:`tfp_vae.rundir.trim_history`). Written by hand because Keras' ``CSVLogger`` keys rows
    by the epoch index, which repeats or shifts when a run is interrupted and resumed.

    A resumed run whose columns differ from the file's (an older version's, without ``val_``
    columns or with Keras' ``epoch``) rewrites the file once with the union of both, ``NA``
    where a row has no value, so that every row matches the header.

    Rows are written on the log grid only, the multiples of ``log_every`` and the ``last`` step:
    Keras ends an epoch cut short by a stop request or a divergence too, and its row (a partial
    interval, or NaN) would stand in the file beside the resumed run's rows, which an
    uninterrupted run does not have."""

    def __init__(self, filename, log_every, last=None):
        super().__init__()
        self.filename, self.log_every, self.last = filename, log_every, last
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step % self.log_every and step != self.last:
            return
        logs = {**(logs or {}), "step": step}
        if self.keys is None:
            self.keys = self._columns(["step"] + sorted(k for k in logs if k != "step"))
        row = [str(logs.get(key, "NA")) for key in self.keys]
        with open(self.filename, "a", newline="") as f:
            csv.writer(f, lineterminator="\n").writerow(row)

    def _columns(self, keys):
        """The header to write under: ``keys``, or the union with an existing file's."""
        rows = []
        if os.path.isfile(self.filename):
            with open(self.filename, newline="") as f:
                rows = list(csv.reader(f))
        if rows and rows[0] == keys:
            return keys
        if not rows:
            files.write_bytes_atomic(self.filename, (",".join(keys) + "\n").encode())
            return keys
        header = rows[0]
        union = ["step"] + sorted((set(header) | set(keys)) - {"step", "epoch"})
        lines = [union]
        for row in rows[1:]:
            values = dict(zip(header, row))
            if "step" not in values:  # Keras' CSVLogger rows: epoch e ended at step (e+1) x n
                values["step"] = str((int(values["epoch"]) + 1) * self.log_every)
            lines.append([values.get(name, "NA") for name in union])
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(lines)
        files.write_bytes_atomic(self.filename, out.getvalue().encode())
        return union


class Progress(keras.callbacks.Callback):
    """The progress a user reads, on the real training step: one line per log interval (``step
    2000/20000: loss ..., nelbo ..., val_nelbo ... (4.8 ms/step)``) and, on a terminal, a live
    line between them (``step 2350/20000 [====>    ] 4.8 ms/step, ETA 1:25``).

    Written by hand because Keras' progress bar counts the steps of an epoch: a run shorter
    than one log interval shows the whole interval as done, an interrupted epoch jumps to its
    end, and after a resume its rate and ETA count the steps of the earlier run."""

    def __init__(self, last, live, stream=None, every_seconds=0.5):
        super().__init__()
        self.last, self.live, self.every_seconds = last, live, every_seconds
        self.stream = stream or sys.stdout
        self._mark = self._shown = None  # (time, step) of the last line; time of the live one

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def _rate(self, step):
        """Seconds per step since the last line (None before two points)."""
        now = time.perf_counter()
        if self._mark is None or step <= self._mark[1]:
            return None
        return (now - self._mark[0]) / (step - self._mark[1])

    def on_train_begin(self, logs=None):
        self._mark = (time.perf_counter(), self._step())

    def on_train_batch_end(self, batch, logs=None):
        if not self.live or time.perf_counter() - (self._shown or 0) < self.every_seconds:
            return
        step, rate = self._step(), self._rate(self._step())
        done = int(20 * step / self.last)
        text = f"step {step}/{self.last} [{'=' * done}{'>' if done < 20 else ''}" \
               f"{' ' * (19 - done)}]"
        if rate:
            eta = int(rate * (self.last - step))
            text += f" {1e3 * rate:.1f} ms/step, ETA {eta // 60}:{eta % 60:02d}"
        self.stream.write("\r" + text.ljust(78))
        self.stream.flush()
        self._shown = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        step = self._step()
        rate = self._rate(step)
        terms = ", ".join(f"{k} {float(v):.4g}" for k, v in (logs or {}).items()
                          if np.ndim(v) == 0)
        pace = f" ({1e3 * rate:.1f} ms/step)" if rate else ""
        clear = "\r" + " " * 78 + "\r" if self.live and self._shown else ""
        self.stream.write(f"{clear}step {step}/{self.last}: {terms}{pace}\n")
        self.stream.flush()
        self._mark, self._shown = (time.perf_counter(), step), None


class StepBoard(keras.callbacks.Callback):
    """Every epoch's logs as TensorBoard scalars at the global training step: the training terms
    in ``<log_dir>/train``, the ``val_`` terms of :class:`Validation` in
    ``<log_dir>/validation``, under the same tags (:func:`board_tag`), so that each chart shows
    both curves."""

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = log_dir
        self.writers = {}

    def _writer(self, run):
        if run not in self.writers:
            self.writers[run] = tf.summary.create_file_writer(os.path.join(self.log_dir, run))
        return self.writers[run]

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        for name, value in (logs or {}).items():
            run, term = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            if term == "step":
                continue
            with self._writer(run).as_default():
                tf.summary.scalar(board_tag(term), float(value), step=step)
        for writer in self.writers.values():
            writer.flush()

    def close(self):
        """At the end of the run (not of each ``fit`` call)."""
        for writer in self.writers.values():
            writer.close()
