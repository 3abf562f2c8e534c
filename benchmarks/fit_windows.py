"""How steady a long ``model.fit`` is: ms per step of every window of one fit, and beside it
``bin/train`` over as many steps, alternately.

    python benchmarks/fit_windows.py --model=vae --windows=6 --rounds=2   # a few minutes

``benchmarks/bench.py`` times a step as the fastest of four short windows; a full run sees every
window. Each round runs one ``model.fit`` of ``--windows`` windows of 1,000 steps on the stream
``bin/train`` uses, with its per-step callbacks and defaults (:func:`bench.train_speed`'s
setting), and prints each window's ms per step (the first holds the compilation); then
``bin/train --model=MODEL --iter_max=windows*1000`` without the evaluation's extras, whose
``train_seconds`` (from ``evaluation.json``) it prints as ms per step over the same number of
steps, the first window's compilation included as in the fit's total.
"""

import argparse
import os
import sys
import time

import keras

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402
from tfp_vae import data  # noqa: E402

STEPS = 1000  # per window (bin/train's default log_every)


class _WindowTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.t0)


def fit_windows(kind, mnist, windows):
    """Seconds of each 1,000-step window of one fit with bin/train's defaults."""
    model = bench.compiled_model(kind, *bench.default_settings(kind))
    timer = _WindowTimes()
    stream = bench.training_stream(kind, mnist, model.reference_batch_size)
    model.fit(stream, epochs=windows, steps_per_epoch=STEPS, verbose=0,
              callbacks=bench.bin_train_callbacks(model) + [timer])
    return timer.seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vae", help="vae, gmvae, ssvae or fsvae")
    parser.add_argument("--windows", type=int, default=6, help="1,000-step windows per fit")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    mnist = data.load_mnist()
    for r in range(args.rounds):
        seconds = fit_windows(args.model, mnist, args.windows)
        print(f"round {r + 1} fit, ms per step of each window: "
              + " ".join(f"{1e3 * s / STEPS:.2f}" for s in seconds)
              + f" (all {1e3 * sum(seconds) / (STEPS * args.windows):.2f})", flush=True)
        total = bench.bin_train_evaluation([f"--model={args.model}",
                                            f"--iter_max={STEPS * args.windows}"])["train_seconds"]
        print(f"round {r + 1} bin/train: {1e3 * total / (STEPS * args.windows):.2f} ms per step "
              f"({total:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
