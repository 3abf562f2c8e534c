"""The decoder's Bernoulli log-density on one IWAE chunk: TFP's against tfp_vae's.

    python benchmarks/bernoulli.py          # about a minute

The IWAE evaluation scores 784 pixels for each of the VAE's ``iwae_max_rows`` (10,000)
(sample, image) rows per chunk. ``tfd.Bernoulli(logits=l).log_prob(x)`` computes both outcomes'
log-probabilities (two softplus) and mixes them with ``multiply_no_nan``; the decoder's
distribution, :class:`tfp_vae.distributions.BernoulliLogits` (a
:class:`~tfp_vae.distributions.SoftplusBernoulli`), computes ``x * l - softplus(l)``. Times both,
summed over pixels as ``tfd.Independent`` does, without and with XLA, beside the chunk's matrix
products alone (``bench.iwae_matmuls_alone``, the floor ``bench.py`` uses), and prints each
form's largest relative error against float64. Without XLA, as the IWAE evaluation runs (so
that ``bin/train`` and the SavedModel's signatures agree), TFP's form cost more than the
matrix products.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

import bench  # noqa: E402
from tfp_vae import distributions, models  # noqa: E402

CALLS, REPEATS = 20, 5


def tfp_form(logits, x):
    return tfp.distributions.Independent(tfp.distributions.Bernoulli(logits=logits), 1).log_prob(x)


def ours(logits, x):
    return distributions.BernoulliLogits()(logits).log_prob(x)


def ms_per_call(fn, logits, x, jit):
    """Best of REPEATS loops of CALLS calls inside one tf.function, in ms per call."""
    step = tf.function(fn, jit_compile=jit)

    @tf.function
    def loop():
        total = tf.constant(0.0)
        for _ in tf.range(CALLS):
            total += tf.reduce_sum(step(logits, x))
        return total

    loop().numpy()
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        loop().numpy()
        best = min(best, time.perf_counter() - t0)
    return 1000 * best / CALLS


def main():
    model = models.VAE(z_dim=10)
    model.decoder(tf.zeros((1, 10)))  # builds the decoder, whose shapes the matmul floor reads
    rows = model.iwae_max_rows
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(0.0, 4.0, (rows, model.x_dim)), tf.float32)
    x = tf.constant(rng.random((rows, model.x_dim)) < 0.2, tf.float32)
    l64 = logits.numpy().astype(np.float64)
    exact = np.sum(x.numpy() * l64 - np.logaddexp(0.0, l64), -1)
    forms = (("TFP Bernoulli log_prob", tfp_form), ("tfp_vae's BernoulliLogits", ours))
    for name, fn in forms:
        err = np.max(np.abs(fn(logits, x).numpy() - exact) / np.abs(exact))
        print(f"{name}: largest relative error against float64: {err:.1e}")
    matmuls = 1000 * bench.iwae_matmuls_alone(model, 1, rows)  # one chunk of `rows` rows
    print(f"ms per ({rows}, {model.x_dim}) chunk, best of {REPEATS} loops of {CALLS}:")
    print("| work | no XLA | XLA |\n|---|---|---|")
    print(f"| the chunk's matrix products alone (for scale) | {matmuls:.1f} | |")
    for name, fn in forms:
        print(f"| {name} | {ms_per_call(fn, logits, x, False):.1f} | "
              f"{ms_per_call(fn, logits, x, True):.1f} |")


if __name__ == "__main__":
    main()
