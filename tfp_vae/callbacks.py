"""The Keras callbacks of a training run: sample grids, the history file, a validation curve and
a TensorBoard board on the global step.

Checkpoints and stops are :class:`tfp_vae.guard.StepCheckpoint`'s. The board is written by hand
(:class:`StepBoard`) because Keras' ``TensorBoard`` callback logs epoch summaries against the
epoch index while everything else (samples, evaluation) is logged against the training step, so
the two cannot be read together.
"""

import csv
import io
import os

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
    at the last step, so that a long run can be watched (the reference checks the FSVAE's grid
    every 10k steps), and to TensorBoard (tag ``samples/grid``, at the step) when ``log_dir`` is
    given."""

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

    def on_train_end(self, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.last_written is not None and step != self.last_written:
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


class HistoryCSV(keras.callbacks.CSVLogger):
    """Keras' CSVLogger with a ``step`` column: the training step each row was logged at, by
    which a resumed run trims the file (:func:`tfp_vae.guard.trim_history`) and curves are
    drawn.

    A resumed run whose columns differ from the file's (a version that wrote no ``val_``
    columns) rewrites the file once with the union of both, ``NA`` where a row has no value, so
    that every row matches the header (Keras would append rows of another width)."""

    def on_epoch_end(self, epoch, logs=None):
        logs = {**(logs or {}), "step": int(self.model.optimizer.iterations.numpy())}
        if self.keys is None:
            self.keys = self._columns(sorted(logs))
        super().on_epoch_end(epoch, logs)

    def _columns(self, keys):
        if not (self.append and os.path.isfile(self.filename)):
            return keys
        with open(self.filename, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or rows[0][1:] == keys:
            return keys
        header = rows[0]
        union = sorted(set(header[1:]) | set(keys))
        lines = [["epoch"] + union]
        for row in rows[1:]:
            values = dict(zip(header, row))
            lines.append([values.get(name, "NA") for name in lines[0]])
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(lines)
        self.csv_file.close()  # opened by Keras for appending; reopened on the new file
        files.write_bytes_atomic(self.filename, out.getvalue().encode())
        self.csv_file = open(self.filename, "a")
        self.writer, self.append_header = None, False
        return union


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

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()
