"""Pictures of a trained model, written by ``bin/train`` at the end of a run and by
``bin/evaluate`` from a SavedModel.

* ``curves.png``: the training metrics (nelbo, kl, rec, ...) against the step, from the run's
  ``history.csv`` (Keras' ``CSVLogger``, one row per ``--log_every`` steps);
* ``iwae.png``: -IWAE-m against m (log scale) with standard errors, and the NELBO;
* ``latent.png``: the encoder means of 2,000 test images, coloured by digit (their first two
  principal components when z has more than two dimensions);
* ``reconstructions.png``: test images (odd rows) above their reconstructions (even rows);
* ``samples.png``: the model's sample grid, and ``confusion.png`` for a classifier.

The same pictures and the evaluation's numbers also go to TensorBoard (:func:`to_tensorboard`).

Plots use matplotlib's non-interactive Agg backend; grids use :mod:`tfp_vae.images`.
"""

import csv
import glob
import os
import re

import numpy as np

from tfp_vae import files, images

SIZE = (6.4, 4.0)  # inches; at 100 dpi every plot is 640 x 400 pixels
DPI = 100


def _figure():
    import matplotlib
    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt
    return plt, plt.figure(figsize=SIZE, dpi=DPI)


def _save(plt, fig, path):
    path = files.regular_target(path, "the picture")
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=DPI)
    plt.close(fig)
    os.replace(tmp, path)  # atomic, as every file of a run
    return path


def training_curves(history_csv, path, steps_per_row):
    """Each term of ``history_csv`` against the training step, one panel each: the training
    curve and, where the file has its ``val_`` column (:class:`tfp_vae.callbacks.Validation`),
    the held-out one."""
    with open(history_csv) as f:
        rows = list(csv.DictReader(f))

    def numeric(name):  # older files have "val_*" columns of "NA"
        try:
            return all(np.isfinite(float(r[name])) for r in rows)
        except (ValueError, KeyError, TypeError):
            return False
    names = [k for k in (rows[0] if rows else {})
             if k not in ("epoch", "step") and not k.startswith("val_") and numeric(k)]
    plt, fig = _figure()
    steps = [int(float(r["step"])) if "step" in r else (int(r["epoch"]) + 1) * steps_per_row
             for r in rows]
    marker = "o" if len(rows) < 20 else None  # a run of a few points is drawn at all
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        ax.plot(steps, [float(r[name]) for r in rows], label="train", marker=marker)
        if numeric(f"val_{name}"):
            ax.plot(steps, [float(r[f"val_{name}"]) for r in rows], label="validation",
                    marker=marker)
            ax.legend(fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _save(plt, fig, path)


def iwae_against_m(subset, path):
    """-IWAE-m (mean and standard error over the protocol's repeats) against m, with the NELBO."""
    points = sorted((int(m), s) for m, s in subset["niwae"].items())  # int or JSON str keys
    ms = [m for m, _ in points]
    means = [s["mean"] for _, s in points]
    errors = [s["se"] or 0.0 for _, s in points]
    plt, fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.errorbar(ms, means, yerr=errors, marker="o", capsize=3, label="-IWAE-m")
    ax.axhline(subset["nelbo"]["mean"], color="gray", linestyle="--", label="NELBO")
    ax.set_xscale("log")
    ax.set_xlabel("m (importance samples)")
    ax.set_ylabel("nats")
    ax.legend()
    fig.tight_layout()
    return _save(plt, fig, path)


def latent_view(means, labels, path, num_classes=10):
    """A scatter of latent means coloured by label: E[z_1 | x] and E[z_2 | x], their first two
    principal components when z has more dimensions, or, for z of one dimension, E[z | x]
    against the label (jittered); one colour when there are no labels."""
    means = np.asarray(means, np.float64).reshape(len(means), -1)
    labelled = labels is not None and num_classes >= 2
    dims = means.shape[1]
    if dims > 2:
        centred = means - means.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        means = centred @ vt[:2].T  # fewer than two columns when the points span less
    xlabel, ylabel = (("principal component 1 of E[z | x]", "principal component 2 of E[z | x]")
                      if dims > 2 else ("E[z_1 | x]", "E[z_2 | x]"))
    if dims == 1:
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(means))
        second = (np.asarray(labels, np.float64) if labelled else 0.0) + jitter
        means, ylabel = np.stack([means[:, 0], second], 1), "class" if labelled else "(spread)"
    means = np.pad(means, [(0, 0), (0, max(0, 2 - means.shape[1]))])
    plt, fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    if not labelled:
        ax.scatter(means[:, 0], means[:, 1], s=4)
    else:
        cmap = "tab10" if num_classes <= 10 else "tab20" if num_classes <= 20 else "viridis"
        points = ax.scatter(means[:, 0], means[:, 1], c=labels, cmap=cmap, s=4, vmin=-0.5,
                            vmax=num_classes - 0.5)
        fig.colorbar(points, ticks=range(0, num_classes, max(1, num_classes // 10)),
                     label="digit" if num_classes == 10 else "class")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return _save(plt, fig, path)


def reconstructions(x, x_hat, path, image_shape, columns=10):
    """Pairs of rows: ``columns`` inputs above their reconstructions."""
    columns = min(columns, len(x))
    x = np.asarray(x, np.float32).reshape(-1, columns, int(np.prod(image_shape)))
    x_hat = np.clip(np.asarray(x_hat, np.float32), 0, 1).reshape(x.shape)
    pairs = np.stack([x, x_hat], 1).reshape(-1, x.shape[-1])
    return images.write_png(path, images.tile(pairs, len(pairs) // columns, columns,
                                              *image_shape))


def write_all(out_dir, results, dataset, model, seed=0, history=None, log_every=None,
              n_latent=2000, n_pairs=30):
    """Writes every picture of an evaluated model into ``out_dir``; returns their paths.

    Args:
      results: the evaluation dictionary (:mod:`tfp_vae.tasks`): ``iwae.png`` needs its
        ``subset``, ``confusion.png`` its ``classifier``.
      dataset: the :class:`~tfp_vae.sources.ImageSet` whose test images are encoded.
      model: a Keras model or a :class:`tfp_vae.saved.SavedVAE` (``sample_grid``, ``embed``,
        ``reconstruct``, ``image_shape``, ``binarized``; ``pseudo_input_pictures``).
      seed: the seed of the sample grid.
      history: a Keras ``CSVLogger`` file (one row per ``log_every`` steps) for ``curves.png``.
    """
    import tensorflow as tf
    from tfp_vae import data
    os.makedirs(out_dir, exist_ok=True)
    shape = model.image_shape
    pictures, rows, cols = model.sample_grid(seed)
    written = [images.write_png(os.path.join(out_dir, "samples.png"),
                                images.tile(np.asarray(pictures), rows, cols, *shape))]
    if "classifier" in results:
        written.append(images.write_png(os.path.join(out_dir, "confusion.png"),
                                        images.heatmap(results["classifier"]["confusion"])))
    if history and os.path.isfile(history) and os.path.getsize(history):
        written.append(training_curves(history, os.path.join(out_dir, "curves.png"), log_every))
    if "subset" in results:
        written.append(iwae_against_m(results["subset"], os.path.join(out_dir, "iwae.png")))
    # The first rows of data.test_batches (the same draws), without binarising the whole split.
    x, labels = next(data.test_batches(dataset, model.binarized, batch_size=n_latent))
    y = tf.constant(np.zeros(len(x), np.int32) if labels is None else labels)
    x = tf.constant(x, tf.float32)
    written.append(latent_view(np.asarray(model.embed(x, y)), labels,
                               os.path.join(out_dir, "latent.png"), dataset.num_classes))
    n_pairs = min(n_pairs, len(x) // 10 * 10) or len(x)
    x_hat = model.reconstruct(x[:n_pairs], y[:n_pairs])
    written.append(reconstructions(x[:n_pairs], x_hat,
                                   os.path.join(out_dir, "reconstructions.png"), shape))
    inputs = model.pseudo_input_pictures()
    if inputs is not None:  # the VampPrior's
        written.append(pseudo_inputs(np.asarray(inputs), shape,
                                     os.path.join(out_dir, "pseudo_inputs.png")))
    return written


def pseudo_inputs(inputs, image_shape, path, columns=10):
    """The first (at most 100) learned pseudo-inputs of a VampPrior as a grid, ``columns`` a
    row."""
    shown = np.asarray(inputs)[:100]
    rows = -(-len(shown) // columns)
    padded = np.concatenate([shown, np.zeros((rows * columns - len(shown), shown.shape[1]),
                                             shown.dtype)])
    return images.write_png(path, images.tile(padded, rows, columns, *image_shape))


# Evaluation keys that are bookkeeping (one number per run, not a curve): a text table on the
# board instead of single-dot charts.
_BOOKKEEPING = re.compile(r"(seconds|per_second|steps|resumed_from_step)$")


def scalars(results, prefix="evaluation"):
    """The numbers of an evaluation dictionary as ``{tag: value}`` for TensorBoard: the mean of
    each bound (``evaluation/subset/niwae_1000``, named as ``evaluation/full_test/niwae_100``)
    and accuracies; not counts, standard errors or bookkeeping (:func:`bookkeeping`)."""
    out = {}
    for key, value in results.items():
        tag = f"{prefix}/{key}"
        if key == "niwae" and isinstance(value, dict):
            out.update({f"{tag}_{m}": float(s["mean"]) for m, s in value.items()})
        elif isinstance(value, dict):
            if "mean" in value and isinstance(value["mean"], (int, float)):
                out[tag] = float(value["mean"])
            else:
                out.update(scalars(value, tag))
        elif (isinstance(value, (int, float)) and not isinstance(value, bool)
              and key not in ("n", "se", "images") and not _BOOKKEEPING.search(key)):
            out[tag] = float(value)
    return out


def bookkeeping(results):
    """The run's bookkeeping numbers of an evaluation dictionary (steps, seconds, rates) and its
    name and commit, as ``{key: value}``."""
    return {key: value for key, value in results.items()
            if key in ("run", "commit") or (_BOOKKEEPING.search(key) and value is not None)}


def to_tensorboard(log_dir, paths, results, step):
    """Replaces the evaluation board in ``log_dir`` (an evaluation is a snapshot: a re-evaluated
    run must not show two) with the PNGs of ``paths`` (tag ``evaluation/<file name>``; the final
    sample grid is already on the board as ``samples/grid``), the evaluation's :func:`scalars`
    at ``step``, and a table of its :func:`bookkeeping`."""
    import tensorflow as tf
    for old in glob.glob(os.path.join(glob.escape(log_dir), "events.out.tfevents.*")):
        os.remove(old)
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for path in paths:
            name = os.path.splitext(os.path.basename(path))[0]
            if name == "samples":
                continue
            with open(path, "rb") as f:
                picture = tf.io.decode_png(f.read())
            tf.summary.image(f"evaluation/{name}", picture[None], step=step)
        for tag, value in scalars(results).items():
            tf.summary.scalar(tag, value, step=step)
        table = "\n".join(["| | |", "|---|---|"] + [f"| {key} | {value} |" for key, value
                                                    in bookkeeping(results).items()])
        tf.summary.text("evaluation/run", table, step=step)
    writer.close()
