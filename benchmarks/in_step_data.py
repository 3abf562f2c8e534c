"""Does moving the data into the compiled step pay? ``model.fit`` on the reference stream against
the same images gathered and binarised inside the training step, and against one fixed batch.

    python benchmarks/in_step_data.py                 # VAE, with and without XLA, several minutes
    python benchmarks/in_step_data.py --jit=1 --repeats=2
    python benchmarks/in_step_data.py --check         # the blocks' steps equal Keras' loop's

Three ways to feed the VAE's training step at batch 97, each with 50 steps per call:

* ``stream``: ``tfp_vae.data.stream`` as ``bin/train`` feeds it (a ``tf.data`` pipeline that
  permutes, gathers, scales and re-binarises each batch on its own threads);
* ``in_step``: the training images as one resident uint8 tensor, the stream reduced to the
  (step, indices) pairs of the same permutation; the gather, scaling and Bernoulli draw run
  inside ``train_step`` (under XLA with the Philox generator named, which compiles fast);
* ``fixed``: one binarised batch repeated, no input work at all (the lower bound of both);
* ``blocks`` and ``fixed_blocks``: the stream (or the fixed batch) grouped into blocks of 50
  batches, and each block's 50 steps run as one compiled loop (one call into XLA per block,
  instead of Keras' loop calling the compiled step once per batch); an epoch's last, partial
  batch takes its own compiled branch. The steps are the same bit for bit (``--check``: the
  weights after 60 steps over ten epochs of 500 images equal Keras' loop's, with and without
  XLA).

Each is timed as the best of five windows of 500 steps after a warm-up. This measured the choices
the speed work had to make (docs/performance.md): the stream stays, because the in-step variant
was no faster, and so does Keras' loop, because the blocks were no faster on the real stream.
"""

import argparse
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
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


def block_model(last_batch_size):
    """A VAE whose ``fit`` takes blocks ``(images (50, b, D), sizes (50,))`` and runs each
    block's steps as one compiled loop (Keras has no setting for this, hence the override)."""

    class BlockVAE(models.VAE):
        def make_train_function(self, force=False):
            if self.train_function is not None and not force:
                return self.train_function

            def step(images, size):
                if last_batch_size == images.shape[0]:
                    return self.train_step(images)
                return tf.cond(tf.equal(size, images.shape[0]), lambda: self.train_step(images),
                               lambda: self.train_step(images[:last_batch_size]))

            @tf.function(jit_compile=self.jit_compile)
            def run_block(images, sizes):
                logs = step(images[0], sizes[0])
                for i in tf.range(1, tf.shape(images)[0]):
                    logs = step(images[i], sizes[i])
                return logs

            self.train_function = tf.function(lambda iterator: run_block(*iterator.get_next()))
            return self.train_function

    return BlockVAE(z_dim=10, seed=SEED)


def blocks(stream, steps=50):
    """``steps`` consecutive batches as one element, a partial batch padded with zero rows."""
    return (stream.map(lambda x: (x, tf.shape(x)[0]))
            .padded_batch(steps, padded_shapes=([BATCH, 784], []), drop_remainder=True)
            .prefetch(2))


def index_stream(n):
    """(step, indices) of the reference stream's permutations: a new one each epoch."""
    def epoch(e):
        keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(SEED, tf.int64), e]))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys)).batch(BATCH)
    return (tf.data.Dataset.range(0, np.iinfo(np.int64).max).flat_map(epoch).enumerate()
            .prefetch(tf.data.AUTOTUNE))


def last_batch_size(n):
    """The size of an epoch's last batch of ``n`` images (the reference keeps the partial one)."""
    return n - (data.steps_per_epoch(n, BATCH) - 1) * BATCH


def check_blocks(mnist, n=500, steps=60, spe=10):
    """Whether blocks of ``spe`` batches give the weights of Keras' loop after ``steps`` steps on
    the first ``n`` training images (partial batches included), without and with XLA."""
    images = mnist.train_images[:n]
    for jit in (False, True):
        weights = []
        for blocked in (False, True):
            keras.utils.set_random_seed(SEED)
            model = block_model(last_batch_size(n)) if blocked else models.VAE(z_dim=10, seed=SEED)
            model.compile(optimizer=train.make_optimizer(1e-3, jit), steps_per_execution=spe,
                          jit_compile=jit)
            stream = data.train_dataset(images, BATCH, SEED)
            model.fit(blocks(stream, spe) if blocked else stream, epochs=1,
                      steps_per_epoch=steps, verbose=0)
            weights.append([v.numpy() for v in model.trainable_variables])
        same = all(np.array_equal(a, b) for a, b in zip(*weights))
        print(f"jit_compile={jit}: blocks {'equal' if same else 'DIFFER FROM'} Keras' loop's "
              f"weights after {steps} steps, bit for bit", flush=True)


def timed(kind, jit, mnist, windows=5, steps=500):
    images = mnist.train_images.reshape(len(mnist.train_images), -1)
    if kind == "in_step":
        model, stream = in_step_model(tf.constant(images)), index_stream(len(images))
    else:
        stream = data.stream(mnist, BATCH, SEED)
        if kind.startswith("fixed"):
            stream = tf.data.Dataset.from_tensors(next(iter(stream))).repeat()
        if kind.endswith("blocks"):
            model, stream = block_model(last_batch_size(len(images))), blocks(stream)
        else:
            model = models.VAE(z_dim=10, seed=SEED)
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
    parser.add_argument("--kinds", default="stream,in_step,fixed,blocks,fixed_blocks",
                        help="comma-separated ways to feed the step (see above)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all, interleaved")
    parser.add_argument("--check", action="store_true",
                        help="only check that the blocks' steps equal Keras' loop's (see above)")
    args = parser.parse_args()
    mnist = data.load_mnist()
    if args.check:
        return check_blocks(mnist)
    for _ in range(args.repeats):
        for jit in (bool(int(j)) for j in args.jit.split(",")):
            for kind in args.kinds.split(","):
                print(f"VAE batch {BATCH}, 50 steps per call, jit_compile={jit}, {kind}: "
                      f"{timed(kind, jit, mnist):.2f} ms/step", flush=True)


if __name__ == "__main__":
    main()
