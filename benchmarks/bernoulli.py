"""The Bernoulli log-density of an IWAE chunk: TFP's form against one softplus.

    python benchmarks/bernoulli.py          # about a minute

The IWAE evaluation scores 784 pixels for each of about 10,000 (sample, image) rows per chunk.
``tfd.Bernoulli(logits=l).log_prob(x)`` computes both outcomes' log-probabilities (two softplus)
and mixes them with ``multiply_no_nan``; ``x * l - softplus(l)`` is the same function with one
softplus. Times both on one (10000, 784) chunk, summed over pixels as the decoder's
``tfd.Independent`` does, without and with XLA, beside the chunk's decoder matmuls
(10 -> 300 -> 300 -> 784, the reference's MLP) for scale, and prints the largest relative
difference of the two forms. Without XLA, which the IWAE evaluation runs without (so that
``bin/train`` and the SavedModel's signatures agree), the density is a large share of a chunk's
time; this is the measurement behind :class:`tfp_vae.distributions.SoftplusBernoulli`, the
decoder's distribution (docs/performance.md).
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

ROWS, PIXELS, CALLS, REPEATS = 10000, 784, 20, 5


def tfp_form(logits, x):
    return tf.reduce_sum(tfp.distributions.Bernoulli(logits=logits).log_prob(x), -1)


def softplus_form(logits, x):
    return tf.reduce_sum(x * logits - tf.nn.softplus(logits), -1)


def decoder_matmuls(z, weights):
    h = z
    for w in weights:
        h = tf.matmul(h, w)
    return tf.reduce_sum(h, -1)


def ms_per_call(fn, args, jit):
    """Best of REPEATS loops of CALLS calls inside one tf.function, in ms per call."""
    step = tf.function(fn, jit_compile=jit)

    @tf.function
    def loop():
        total = tf.constant(0.0)
        for _ in tf.range(CALLS):
            total += tf.reduce_sum(step(*args))
        return total

    loop().numpy()
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        loop().numpy()
        best = min(best, time.perf_counter() - t0)
    return 1000 * best / CALLS


def main():
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(0.0, 4.0, (ROWS, PIXELS)), tf.float32)
    x = tf.constant(rng.random((ROWS, PIXELS)) < 0.2, tf.float32)
    z = tf.constant(rng.normal(size=(ROWS, 10)), tf.float32)
    weights = [tf.constant(rng.normal(size=s) * 0.05, tf.float32)
               for s in ((10, 300), (300, 300), (300, PIXELS))]
    exact = tf.reduce_sum(tf.cast(x, tf.float64) * tf.cast(logits, tf.float64)
                          - tf.nn.softplus(tf.cast(logits, tf.float64)), -1)
    for name, fn in (("TFP", tfp_form), ("one softplus", softplus_form)):
        err = np.max(np.abs(fn(logits, x).numpy() - exact.numpy()) / np.abs(exact.numpy()))
        print(f"{name}: largest relative error against float64: {err:.1e}")
    print(f"ms per ({ROWS}, {PIXELS}) chunk, best of {REPEATS} loops of {CALLS}:")
    print("| work | no XLA | XLA |\n|---|---|---|")
    for name, fn, args in (("decoder matmuls (for scale)", decoder_matmuls, (z, weights)),
                           ("TFP Bernoulli log_prob", tfp_form, (logits, x)),
                           ("x * l - softplus(l)", softplus_form, (logits, x))):
        print(f"| {name} | {ms_per_call(fn, args, False):.1f} | "
              f"{ms_per_call(fn, args, True):.1f} |")


if __name__ == "__main__":
    main()
