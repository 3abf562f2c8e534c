"""Model cards: what a recipe's run got, beside its paper's number (``MODEL_CARD.md``).

A run of ``bin/train --recipe=NAME`` writes its card at the end, from the files of its run
folder: the command (the recipe and the settings given beside it), the commit, the paper's test
NLL beside the run's with the difference, the steps and epochs (and where early stopping
stopped), the training time summed over every start of the run (from TensorBoard's event
times, one file per start), the machine, and the weights' SHA-256. For a run folder made
before, ``python -m tfp_vae.cards RUN_DIR`` writes it.
"""

import glob
import json
import os
import platform
import sys

from tfp_vae import recipes, settings

CARD = "MODEL_CARD.md"
# Settings that say where a run's files go or how it is shown, not what it computes.
_NOT_THE_PROTOCOL = ("out_dir", "verbose", "recipe", "run")


def given_settings(config):
    """The settings of ``config`` (a recipe run's ``config.json``) that differ from its
    recipe's, as ``--name=value`` flags."""
    resolved = settings.Settings(recipe=config["recipe"]).resolve()
    recorded = resolved.recorded({})
    return [(f"--{'' if value else 'no'}{name}" if isinstance(value, bool) else
             f"--{name}={settings.number_text(value)}") for name, value in config.items()
            if name in recorded and name not in _NOT_THE_PROTOCOL
            and recorded[name] != value and not isinstance(value, (list, tuple))]


def training_seconds(run_dir):
    """Seconds of training over every start of the run: in each TensorBoard file of
    ``logs/train`` (one per start), the time between its first and last point, stretched by
    one log interval (the time before its first point)."""
    import tensorflow as tf
    total = 0.0
    for path in glob.glob(os.path.join(run_dir, "logs", "train", "events.out.tfevents.*")):
        times = {}  # a log step -> when its first point was written
        for event in tf.compat.v1.train.summary_iterator(path):
            if event.step:
                times[event.step] = min(event.wall_time, times.get(event.step, event.wall_time))
        if len(times) > 1:
            total += (max(times.values()) - min(times.values())) * len(times) / (len(times) - 1)
    return total


def duration(seconds):
    """``seconds`` as a reader takes them in: ``5.3 h``, ``12 min`` or ``40 s``."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def machine():
    """This machine, as a card states it: the processor and its cores."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPU cores ({name}), no GPU"


def card(run_dir):
    """The Markdown card of the recipe run in ``run_dir``."""
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(run_dir, "evaluation.json")) as f:
        results = json.load(f)
    recipe = recipes.get(config["recipe"])
    per_epoch = recipe.steps_per_epoch()
    nll = results.get("nll") or {}
    ours = nll.get("mean")
    command = " ".join(["bin/train", f"--recipe={recipe.name}", *given_settings(config)])
    stopping = results.get("early_stopping") or {}
    steps = results["steps"]
    trained = f"{steps:,} steps ({steps / per_epoch:,.1f} epochs of {per_epoch:,} steps)"
    if stopping.get("best_step") is not None:
        trained += (f"; the weights of step {stopping['best_step']:,} (epoch "
                    f"{stopping['best_step'] / per_epoch:,.0f}), the best validation bound"
                    + (f"; stopped early at step {stopping['stopped_at']:,}"
                       if stopping.get("stopped_at") else ""))
    rows = [
        ("paper", f"{recipe.paper}: test NLL **{recipe.paper_nll}**"),
        ("this run", f"test NLL **{ours:.2f}** +- {nll['se']:.2f} (-IWAE-{nll['samples']} of "
                     f"all {nll['n']:,} test images)" if ours is not None else "no test NLL"),
        ("difference", f"{ours - recipe.paper_nll:+.2f} nats" if ours is not None else "-"),
        ("command", f"`{command}`"),
        ("commit", f"`{results.get('commit')}`"),
        ("training", trained),
        ("time", f"{duration(training_seconds(run_dir))} of training over every start, "
                 f"{duration(results.get('nll_eval_seconds') or 0)} of test NLL; {machine()}"),
        ("weights SHA-256", f"`{results['weights_sha256']}`"),
        ("reproduce the NLL", f"`bin/evaluate --model_dir=pretrained:{recipe.name} "
                              f"--nll_samples=5000`"),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"# {recipe.name}\n\n| | |\n|---|---|\n{table}\n"


def write(run_dir):
    """Writes ``MODEL_CARD.md`` into ``run_dir``; returns its path."""
    path = os.path.join(run_dir, CARD)
    with open(path, "w") as f:
        f.write(card(run_dir))
    return path


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        print(write(folder))
