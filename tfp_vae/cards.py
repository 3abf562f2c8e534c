"""Model cards: what a recipe's run got, beside its paper's number (``MODEL_CARD.md``).

A run of ``bin/train --recipe=NAME`` writes its card at the end, from the files of its run
folder: the command (the recipe and the settings given beside it, as its last start had them),
the commit, the paper's test NLL beside the run's with the difference, the steps and epochs (and
where early stopping stopped), the training time summed over every start of the run, the
machine, and the weights' SHA-256. For a run folder made before,
``python -m tfp_vae.cards RUN_DIR [MODEL_DIR]`` writes it (MODEL_DIR: where the card says its
SavedModel is, e.g. ``pretrained:vampprior-paper/vae``).
"""

import glob
import json
import os
import platform
import sys

from tfp_vae import files, recipes, settings, sources
from tfp_vae.errors import ConfigError

CARD = "MODEL_CARD.md"
# Settings that say where a run's files go or how it is shown, not what it computes.
_NOT_THE_PROTOCOL = ("out_dir", "verbose", "recipe", "run", "steps_per_epoch")


def _flag(name, value):
    if isinstance(value, bool):
        return f"--{'' if value else 'no'}{name}"
    if isinstance(value, (list, tuple)):
        return f"--{name}={','.join(map(str, value))}"
    return f"--{name}={settings.number_text(value)}"


def given_settings(config):
    """The settings of ``config`` (a recipe run's ``config.json``) that differ from what its
    recipe sets, as ``--name=value`` flags: with the recipe, the run's command."""
    recorded = settings.Settings(recipe=config["recipe"]).resolve().recorded({})
    recipe = recipes.get(config["recipe"])
    per_epoch = steps_per_epoch(config)
    for name, epochs in recipe.epochs.items():  # the recipe's durations, in this run's steps
        recorded[name] = round(epochs * per_epoch) if per_epoch else None
    if recorded["likelihood"] == "auto":  # auto's choice follows from the data, named already
        recorded["likelihood"] = config["likelihood"]
    if config.get("epochs") is not None:  # --epochs gave the length: --iter_max follows from it
        recorded["iter_max"] = config["iter_max"]
    return [_flag(name, value) for name, value in config.items()
            if name in recorded and name not in _NOT_THE_PROTOCOL
            and _comparable(recorded[name]) != _comparable(value)]


def _comparable(value):
    return list(value) if isinstance(value, tuple) else value


def steps_per_epoch(config):
    """The run's steps per epoch: recorded in ``config.json``, else (runs made before it was)
    those of MNIST's 60,000 training images after the validation split."""
    if config.get("steps_per_epoch"):
        return config["steps_per_epoch"]
    if config.get("data_name") == "mnist":
        return sources.steps_per_epoch(60_000 - config.get("validation", 0), config["batch_size"])
    return None


def _log_points(path):
    """``{step: first wall time}`` of one TensorBoard file (as far as it can be read: a killed
    start may leave its last record cut)."""
    import tensorflow as tf
    times = {}
    try:
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            if event.step:
                times[event.step] = min(event.wall_time, times.get(event.step, event.wall_time))
    except tf.errors.DataLossError:
        pass
    return times


def training_seconds(run_dir, results):
    """Seconds of training over every start of the run, estimated from TensorBoard's points of
    ``logs/train`` (one file per start): each start's steps, from the last step the start
    before it logged, at the start's own rate (its points' time over their steps), or, for a
    start with fewer than two points, at the last start's rate from ``evaluation.json``."""
    paths = sorted(glob.glob(os.path.join(run_dir, "logs", "train", "events.out.tfevents.*")),
                   key=os.path.getmtime)
    rate = results["train_seconds"] / max(1, results["steps"] - results["resumed_from_step"])
    total, previous = 0.0, 0
    for path in paths:
        times = _log_points(path)
        if not times:
            continue
        first, last = min(times), max(times)
        own = (times[last] - times[first]) / (last - first) if last > first else rate
        total += own * (last - previous)
        previous = last
    return total or results["train_seconds"]


def duration(seconds):
    """``seconds`` as a reader takes them in: ``5.3 h``, ``12 min`` or ``40 s``."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def machine():
    """This machine, as a card states it: the processor, its cores and TensorFlow's GPUs."""
    import tensorflow as tf
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpus = len(tf.config.list_physical_devices("GPU"))
    return f"{os.cpu_count()} CPU cores ({name}), {gpus or 'no'} GPU{'s' if gpus > 1 else ''}"


def card(run_dir, model_dir=None):
    """The Markdown card of the recipe run in ``run_dir``; ``model_dir``: where its SavedModel
    is for ``bin/evaluate`` (default: the run's ``savedmodel/``, if it was exported)."""
    config, results = (_read(run_dir, name) for name in ("config.json", "evaluation.json"))
    if not config.get("recipe"):
        raise ConfigError(f"{run_dir} is not a recipe's run (its config.json names no recipe).")
    recipe = recipes.get(config["recipe"])
    per_epoch = steps_per_epoch(config)
    nll = results.get("nll") or {}
    ours = nll.get("mean")
    command = " ".join(["bin/train", f"--recipe={recipe.name}", *given_settings(config)])
    if model_dir is None and os.path.isdir(os.path.join(run_dir, "savedmodel")):
        model_dir = os.path.join(os.path.abspath(run_dir), "savedmodel")
    rows = [
        ("paper", f"{recipe.paper}: test NLL **{recipe.paper_nll}**"),
        ("this run", f"test NLL **{ours:.2f}** +- {nll['se']:.2f} (-IWAE-{nll['samples']} of "
                     f"all {nll['n']:,} test images)" if ours is not None else "no test NLL"),
        ("difference", f"{ours - recipe.paper_nll:+.2f} nats" if ours is not None else "-"),
        ("command", f"`{command}`"),
        ("commit", f"`{results.get('commit')}`"),
        ("training", _trained(results, per_epoch, recipe.epochs.get("iter_max"))),
        ("time", f"{duration(training_seconds(run_dir, results))} of training over every start, "
                 f"{duration(results.get('nll_eval_seconds') or 0)} of test NLL; {machine()}"),
        ("weights SHA-256", f"`{results['weights_sha256']}`"),
    ]
    if model_dir and ours is not None:
        rows.append(("the NLL again", f"`bin/evaluate --model_dir={model_dir} "
                                      f"--nll_samples={nll['samples']}`"))
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"# {recipe.name}\n\n| | |\n|---|---|\n{table}\n"


def _read(run_dir, name):
    path = os.path.join(run_dir, name)
    if not os.path.isfile(path):
        raise ConfigError(f"{run_dir} has no {name}: a card needs a finished run's folder.")
    with open(path) as f:
        return json.load(f)


def _trained(results, per_epoch, full_epochs=None):
    """The steps (and epochs) trained, where early stopping stopped, and, for a run cut short
    of its recipe's ``full_epochs`` (a shorter ``--iter_max`` or ``--epochs``), how far it got."""
    steps = results["steps"]
    text = f"{steps:,} steps" + (f" ({steps / per_epoch:,.1f} epochs of {per_epoch:,} "
                                 f"step{'s' if per_epoch != 1 else ''})" if per_epoch else "")
    stopping = results.get("early_stopping") or {}
    if per_epoch and full_epochs and steps < full_epochs * per_epoch \
            and not stopping.get("stopped_at"):
        text += (f"; **cut short**: {100 * steps / (full_epochs * per_epoch):.1f} % of the "
                 f"recipe's {full_epochs:,} epochs")
    if stopping.get("best_step") is not None:
        best = stopping["best_step"]
        text += (f"; the weights of step {best:,}"
                 + (f" (epoch {best / per_epoch:,.0f})" if per_epoch else "")
                 + ", the best validation bound"
                 + (f"; stopped early at step {stopping['stopped_at']:,}"
                    if stopping.get("stopped_at") else ""))
    return text


def write(run_dir, model_dir=None):
    """Writes ``MODEL_CARD.md`` into ``run_dir`` (whole or not at all); returns its path."""
    path = os.path.join(run_dir, CARD)
    files.write_bytes_atomic(path, card(run_dir, model_dir).encode())
    return path


def main(argv):
    """``python -m tfp_vae.cards RUN_DIR [MODEL_DIR]``: writes the run's card; exit code 2
    and an ``error:`` line when it cannot."""
    from tfp_vae import cli
    if len(argv) not in (2, 3):
        return cli.fail("usage: python -m tfp_vae.cards RUN_DIR [MODEL_DIR]")
    try:
        print(write(*argv[1:]))
    except ConfigError as e:
        return cli.fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
