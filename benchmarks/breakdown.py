"""Where the time of one training step goes: the step timed with and without each piece.

    python benchmarks/breakdown.py                    # VAE and GMVAE at batch 97, about 4 minutes
    python benchmarks/breakdown.py --models=vae --steps=50

For each model at its reference batch size, on one fixed binarised batch (so no input pipeline),
each piece runs ``--steps`` times inside one ``tf.function`` (as ``bin/train``'s 50 steps per
call do) and is timed as the best of a few windows:

* ``fit``: ``model.fit`` on the reference stream with ``bin/train``'s defaults and callbacks (the
  step of ``benchmarks/bench.py``);
* ``train_step``: the model's own ``train_step`` on the fixed batch (``fit`` minus the input
  pipeline and Keras' loop);
* ``loss + gradients``: the negative ELBO and its gradients, no optimiser update, no metrics;
* ``loss``: the negative ELBO alone (forward);
* ``loss, plain TF``: the same bound written with plain TensorFlow ops instead of ``tfd``
  distribution objects (the overhead of the distribution objects' graphs);
* ``Adam update``: ``optimizer.apply`` of fixed gradients alone, for
  :class:`tfp_vae.optimizers.FusedAdam` (bin/train's without XLA) and ``keras.optimizers.Adam``
  (bin/train's with XLA);
* ``matmuls alone``: the step's matrix products at their shapes (forward, weight and input
  gradients), as in ``benchmarks/bench.py``.

Each row also gives its share of ``train_step`` and the ratio to the peak-rate floor.
"""

import argparse
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the floors and the fit timing of the main benchmark)

from tfp_vae import data, models, optimizers  # noqa: E402


def timed(fn, steps, windows=10):
    """Seconds per step of ``fn`` (which runs ``steps`` steps per call): best of ``windows``."""
    fn().numpy()  # trace and compile
    best = math.inf
    for _ in range(windows):
        t0 = time.perf_counter()
        fn().numpy()
        best = min(best, time.perf_counter() - t0)
    return best / steps


def plain_negative_elbo(model, x, seed):
    """The VAE's single-sample negative ELBO with plain TensorFlow ops (no tfd objects): the
    same computation as :func:`tfp_vae.bounds.negative_elbo` with the analytic KL."""
    h = model.encoder.net(x)
    mean, raw = tf.split(h, 2, axis=-1)
    variance = tf.nn.softplus(raw) + 1e-8
    eps = tf.random.stateless_normal(tf.shape(mean), seed)
    z = mean + tf.sqrt(variance) * eps
    logits = model.decoder.net(z)
    rec = tf.reduce_sum(tf.nn.softplus(logits) - x * logits, -1)
    kl = 0.5 * tf.reduce_sum(variance + tf.square(mean) - 1.0 - tf.math.log(variance), -1)
    return kl + rec


def pieces(kind, steps, jit, mnist):
    """{piece: seconds per step} of the pieces of one training step, compiled with ``jit``."""
    cls = models.get(kind)
    batch = cls.reference_batch_size
    model = cls(z_dim=cls.reference_z)
    model.compile(optimizer=optimizers.FusedAdam(1e-3))  # as bin/train without XLA
    model.optimizer.build(model.trainable_variables)
    keras_adam = keras.optimizers.Adam(1e-3)
    keras_adam.build(model.trainable_variables)
    x = tf.constant(next(iter(data.train_dataset(mnist.train_images, batch, seed=0))))
    variables = model.trainable_variables
    fixed_grads = [tf.ones_like(v) * 1e-6 for v in variables]

    def loop(body):
        @tf.function(jit_compile=jit)
        def run():
            total = tf.constant(0.0)
            for i in tf.range(steps):
                total += body(tf.stack([0, i]))
            return total
        return run

    def train_step(seed):
        model.train_step(x)
        return tf.constant(0.0)

    def loss_and_grads(seed):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.negative_elbo(x, seed=seed).value)
        grads = tape.gradient(loss, variables)
        return loss + tf.add_n([tf.reduce_sum(g[..., :1]) for g in grads])

    def loss(seed):
        return tf.reduce_mean(model.negative_elbo(x, seed=seed).value)

    def plain_loss(seed):
        return tf.reduce_mean(plain_negative_elbo(model, x, seed))

    def adam(seed):
        model.optimizer.apply(fixed_grads, variables)
        return tf.constant(0.0)

    def adam_keras(seed):
        keras_adam.apply(fixed_grads, variables)
        return tf.constant(0.0)

    bodies = {"train_step": train_step, "loss + gradients": loss_and_grads, "loss": loss}
    if kind == "vae":
        bodies["loss, plain TF"] = plain_loss
    bodies["Adam update (FusedAdam)"] = adam
    bodies["Adam update (keras.optimizers.Adam)"] = adam_keras
    return {name: timed(loop(body), steps) for name, body in bodies.items()}, model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="vae,gmvae")
    parser.add_argument("--steps", type=int, default=50, help="Steps per call.")
    args = parser.parse_args()
    peak = bench.matmul_rate()
    mnist = data.load_mnist()
    print(f"peak {peak / 1e9:.1f} GFLOP/s; {args.steps} steps per call; ms per step; share = "
          f"of train_step with the same XLA setting; x floor = ratio to the peak-rate floor")
    print("| model | piece | no XLA | share | x floor | XLA | share | x floor |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in args.models.split(","):
        timings = {}
        for jit in (False, True):
            timings[jit], model = pieces(kind, args.steps, jit, mnist)
        parts = bench.step_parts(model, model.reference_batch_size)
        floor = bench.train_step_flops(parts) / peak
        spe, default_jit = bench.default_settings(kind)
        fit = 1 / bench.train_speed(kind, mnist, args.steps * 8, spe, default_jit)[0]
        alone = bench.matmuls_alone(parts)

        def cell(seconds, step, floor=floor):
            share = f"{seconds / step:.0%}" if step else ""
            return f"{seconds * 1e3:.2f} | {share} | {seconds / floor:.1f}x"
        label = kind.upper()
        fit_cells = [cell(fit, None), "| | "] if not default_jit else ["| | ", cell(fit, None)]
        print(f"| {label} | fit (bin/train's defaults: {spe} steps per call) | "
              + " | ".join(fit_cells) + " |")
        for name in timings[False]:
            print(f"| {label} | {name} | " + " | ".join(
                cell(timings[jit][name], timings[jit]["train_step"]) for jit in (False, True))
                + " |")
        print(f"| {label} | matmuls alone | {cell(alone, None)} | | | |")
        print(f"| {label} | floor at peak rate | {floor * 1e3:.2f} | | 1.0x | | | |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
