"""Training-step time with the training stream under several ``tf.data`` threading options.

    python benchmarks/stream_options.py --model=vae --rounds=3
    python benchmarks/stream_options.py --model=ssvae --steps=400 --variants=default,intra1

On two cores the stream's map (gather, scaling, Bernoulli draw) competes with the training step
for the same cores. Each variant applies ``tf.data.Options`` to the stream ``bin/train`` builds
(:func:`tfp_vae.data.stream`; the batches are the same, only where and how they are made
changes) and is timed as :func:`bench.train_speed` times it (``model.fit`` with bin/train's
defaults and per-step callbacks, best of four windows). The variants alternate, round after
round, so that this machine's drift reaches all of them alike:

* ``default``: the stream as it is (tf.data's own thread pool, autotuned parallelism);
* ``intra1``: ``threading.max_intra_op_parallelism = 1`` (each op inside the map on one thread);
* ``pool1``: ``threading.private_threadpool_size = 1`` (the whole stream on one thread);
* ``pool1_intra1``: both;
* ``budget1``: ``autotune.cpu_budget = 1`` (autotuning may use one core);
* ``noautotune``: ``autotune.enabled = False``.
"""

import argparse
import os
import statistics
import sys

import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402
from tfp_vae import data  # noqa: E402


def options(variant):
    """The ``tf.data.Options`` of one variant (see the module docstring)."""
    opts = tf.data.Options()
    if "intra1" in variant:
        opts.threading.max_intra_op_parallelism = 1
    if "pool1" in variant:
        opts.threading.private_threadpool_size = 1
    if variant == "budget1":
        opts.autotune.cpu_budget = 1
    if variant == "noautotune":
        opts.autotune.enabled = False
    return opts


VARIANTS = ("default", "intra1", "pool1", "pool1_intra1", "budget1", "noautotune")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vae", help="vae, gmvae, ssvae or fsvae")
    parser.add_argument("--steps", type=int, default=1000, help="timed steps per variant")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    variants = args.variants.split(",")
    for variant in variants:
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    mnist = data.load_mnist()
    spe, jit = bench.default_settings(args.model)
    times = {v: [] for v in variants}
    for r in range(args.rounds):
        for variant in variants:
            rate = bench.train_speed(args.model, mnist, args.steps, spe, jit,
                                     stream_options=options(variant))[0]
            times[variant].append(1e3 / rate)
            print(f"round {r + 1} {variant}: {times[variant][-1]:.2f} ms/step", flush=True)
    for variant, ms in times.items():
        print(f"{args.model} {variant}: " + " / ".join(f"{t:.2f}" for t in ms)
              + f" ms (median {statistics.median(ms):.2f})")


if __name__ == "__main__":
    main()
