"""Does moving the data into the compiled step pay? ``model.fit`` on the reference stream against
the same images gathered and binarised inside the training step, and against one fixed batch.

    python benchmarks/in_step_data.py                 # VAE, with and without XLA, about 3 minutes
    python benchmarks/in_step_data.py --jit=1 --repeats=2

Three ways to feed the VAE's training step at batch 97, each with 50 steps per call:

* ``stream``: ``tfp_vae.data.stream`` as ``bin/train`` feeds it (a ``tf.data`` pipeline that
  permutes, gathers, scales and re-binarises each batch on its own threads);
* ``in_step``: the training images as one resident uint8 tensor, the stream reduced to the
  (step, indices) pairs of the same permutation; the gather, scaling and Bernoulli draw run
  inside ``train_step`` (under XLA with the Philox generator named, which compiles fast);
* ``fixed``: one binarised batch repeated, no input work at all (the lower bound of both).

Each is timed as the best of five windows of 500 steps after a warm-up. This measured the choice
the speed work had to make (docs/performance.md): the stream stays, because the in-step variant
was no faster.
"""

import argparse
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (bin/train's per-step callbacks)

from tfp_vae import data, models, train  # noqa: E402

BATCH, SEED, SALT = 97, 0, 0x5EED  # SALT: tfp_vae.data's binarisation salt


def in_step_model(table):
    """A VAE whose training step takes ``(step, indices)`` and builds its batch from ``table``."""

    class InStepVAE(models.VAE):
        def train_step(self, batch):
            step, idx = batch
            x = tf.cast(tf.gather(table, idx), tf.float32) / 255.0
            u = tf.random.stateless_uniform(tf.shape(x), tf.stack([tf.constant(SEED + SALT,
                                                                               tf.int64), step]),
                                            alg="philox")
            return super().train_step(tf.cast(u < x, tf.float32))

    return InStepVAE(z_dim=10, seed=SEED)


def index_stream(n):
    """(step, indices) of the reference stream's permutations: a new one each epoch."""
    def epoch(e):
        keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(SEED, tf.int64), e]))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys)).batch(BATCH)
    return (tf.data.Dataset.range(0, np.iinfo(np.int64).max).flat_map(epoch).enumerate()
            .prefetch(tf.data.AUTOTUNE))


def timed(kind, jit, mnist, windows=5, steps=500):
    images = mnist.train_images.reshape(len(mnist.train_images), -1)
    if kind == "in_step":
        model, stream = in_step_model(tf.constant(images)), index_stream(len(images))
    else:
        model = models.VAE(z_dim=10, seed=SEED)
        stream = data.stream(mnist, BATCH, SEED)
        if kind == "fixed":
            stream = tf.data.Dataset.from_tensors(next(iter(stream))).repeat()
    model.compile(optimizer=train.make_optimizer(1e-3, jit), steps_per_execution=50,
                  jit_compile=jit)
    callbacks = bench.bin_train_callbacks(model)
    model.fit(stream, epochs=1, steps_per_epoch=100, verbose=0, callbacks=callbacks)
    best = math.inf
    for _ in range(windows):
        t0 = time.perf_counter()
        model.fit(stream, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=callbacks)
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jit", default="0,1", help="comma-separated XLA settings (0, 1)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all three, interleaved")
    args = parser.parse_args()
    mnist = data.load_mnist()
    for _ in range(args.repeats):
        for jit in (bool(int(j)) for j in args.jit.split(",")):
            for kind in ("stream", "in_step", "fixed"):
                print(f"VAE batch {BATCH}, 50 steps per call, jit_compile={jit}, {kind}: "
                      f"{timed(kind, jit, mnist):.2f} ms/step", flush=True)


if __name__ == "__main__":
    main()
