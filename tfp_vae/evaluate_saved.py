"""Evaluates an exported SavedModel with the protocol of its task, from the SavedModel alone (no
checkpoint, no training code): what ``bin/evaluate`` runs, callable from a script.

    from tfp_vae import evaluate_saved
    results = evaluate_saved.run("savedmodels/vae", evaluate_saved.Options(eval_repeats=10))

The test set is the one the model was trained on (recorded in its metadata; MNIST or SVHN for
older exports), or any other of the same image shape (``Options.dataset`` / ``data_dir``, read as
``bin/train`` reads them).
"""

import dataclasses
import json
import logging
import os
from typing import Optional

from tfp_vae import errors, registry, saved, settings, sources, tasks

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Options:
    """How to evaluate (the flags of ``bin/evaluate``, with the same defaults).

    ``seed`` None: the model's training seed. ``dataset``/``data_dir`` None: its training data.
    ``pixel_max`` None: the scale the model was trained on (255 unless it recorded another).
    """
    dataset: Optional[str] = None
    data_dir: Optional[str] = None
    memory_budget: str = sources.DEFAULT_BUDGET
    pixel_max: Optional[int] = None
    verify_checksums: bool = True
    svhn_split: str = "train"
    eval_repeats: int = 100
    iwae_samples: tuple = (1, 10, 100, 1000)
    full_test: bool = True
    nll_samples: int = 0
    check_steps: int = 3000
    seed: Optional[int] = None
    pictures_dir: Optional[str] = None


def run(model_dir, options=None):
    """The evaluation results (a JSON-ready dict, as ``bin/train``'s ``evaluation.json``) of the
    SavedModel at ``model_dir`` on ``options``' test data; with ``options.pictures_dir``, its
    pictures drawn there too."""
    options = options or Options()
    settings.check_data(options.dataset, options.memory_budget)  # as bin/train's
    model = saved.SavedVAE(model_dir)  # a damaged model is named before data is read
    dataset = test_data(model, options)
    seed = options.seed if options.seed is not None else model.seed
    chosen = dataclasses.replace(options, seed=seed)
    results = {"model_dir": os.path.abspath(model_dir), "kind": model.kind,
               "config": model.config}
    results.update(tasks.get(model.task).evaluate(model, dataset, model.binarized, chosen))
    results["data"] = {"name": dataset.name, "source": dataset.source,
                       "sha256": dataset.fingerprint}
    if options.pictures_dir:
        from tfp_vae import pictures  # matplotlib only when pictures are asked for
        history, log_every = training_history(model_dir, model.kind)
        written = pictures.write_all(options.pictures_dir, results, dataset, model, seed=seed,
                                     history=history, log_every=log_every)
        log.info("wrote %s", ", ".join(written))
    return results


def test_data(model, options):
    """The test set of ``options``, or else the one ``model`` (a :class:`saved.SavedVAE`) was
    trained on, checked against the model's image shape and classes."""
    trained_on = model.metadata.get("data") or {}
    if options.dataset is not None or options.data_dir is not None:
        spec, data_dir = options.dataset, options.data_dir
    elif trained_on:
        spec, data_dir = trained_on.get("data_spec"), trained_on.get("data_dir_resolved")
    else:  # exports older than the data record
        spec = "svhn" if model.image_shape == (32, 32, 3) else "mnist"
        data_dir = None
    pixel_max = options.pixel_max if options.pixel_max is not None else \
        trained_on.get("data_pixel_max")
    dataset = sources.load(spec, data_dir, options.memory_budget, options.verify_checksums,
                           options.svhn_split, default=registry.get(model.kind).dataset,
                           pixel_max=pixel_max)
    recorded = trained_on.get("data_sha256")
    if options.dataset is None and options.data_dir is None and recorded \
            and recorded != dataset.fingerprint:
        raise errors.DataError(f"{dataset.source} has changed since {model.path} was trained on "
                               f"it (its SHA-256 is {dataset.fingerprint[:12]}..., the model "
                               f"records {recorded[:12]}...); pass the test set to use with "
                               f"--data_dir (or --dataset) to evaluate on it anyway.")
    if tuple(dataset.image_shape) != model.image_shape:
        raise errors.DataError(f"{model.path} models {'x'.join(map(str, model.image_shape))} "
                               f"images, but {dataset.name} holds "
                               f"{'x'.join(map(str, dataset.image_shape))} ones; pass a test set "
                               f"of the model's image shape (--dataset, --data_dir).")
    if model.conditional:
        if not dataset.labelled or dataset.num_classes > model.num_classes:
            raise errors.DataError(f"the {model.kind} of {model.path} knows {model.num_classes} "
                                   f"classes, but {dataset.name} has "
                                   f"{dataset.num_classes or 'no labels'}; pass labelled test "
                                   f"data of the model's classes.")
        dataset = dataclasses.replace(dataset, num_classes=model.num_classes)
    return dataset


def training_history(model_dir, kind):
    """The run's ``history.csv`` and its ``log_every`` (from ``config.json`` of a ``kind`` run),
    looked for in the model folder and, for a run's ``savedmodel/`` folder, in the run folder
    above it; ``(None, None)`` when there are none."""
    folders = [model_dir]
    if os.path.basename(os.path.normpath(os.path.abspath(model_dir))) == "savedmodel":
        folders.append(os.path.dirname(os.path.normpath(os.path.abspath(model_dir))))
    for folder in folders:
        history, config = (os.path.join(folder, name) for name in ("history.csv", "config.json"))
        if os.path.isfile(history) and os.path.isfile(config):
            try:
                with open(config) as f:
                    recorded = json.load(f)
                if recorded["model"] == kind:
                    return history, int(recorded["log_every"])
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("%s is unreadable; no training curves drawn.", config)
    return None, None
