"""The papers' test NLL (-IWAE-N of each test image, N = 5,000) against its floor, in one run.

    python benchmarks/nll.py --images=500 --samples=5000

Times ``tfp_vae.evaluate.test_log_likelihood``, as ``bin/train --nll_samples=N`` (the Keras
model) and ``bin/evaluate --nll_samples=N`` (the SavedModel, through ``saved.SavedVAE``) run it,
for the reference VAE (784-300-300 ELU MLPs, z = 10) on ``--images`` binary images in batches
of 500, and its floor: the decoder's matrix products for the same rows (N x images rows of
10-300-300-784), as bare ``tf.linalg.matmul`` on chunks of the model's size (10,000 rows), and
at the machine's rate for a 2048^3 product. Each figure is scaled to the 10,000 test images
(the time is linear in the images); the weights do not change the time.
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from speed import matmul_rate  # noqa: E402

DECODER = (10, 300, 300, 784)


def timed(function, repeats=1):
    """Best wall seconds of ``function()`` over ``repeats`` calls (after one call to warm up)."""
    function()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_floor(rows, chunk=10_000):
    """Seconds of the decoder's three matrix products over ``rows`` rows, in chunks of ``chunk``
    rows (bare products of the right shapes, nothing else)."""
    import tensorflow as tf
    weights = [tf.random.normal([a, b]) for a, b in zip(DECODER[:-1], DECODER[1:])]
    inputs = [tf.random.normal([chunk, a]) for a in DECODER[:-1]]
    products = tf.function(lambda: [tf.linalg.matmul(x, w) for x, w in zip(inputs, weights)])
    return timed(lambda: [p.numpy() for p in products()], repeats=3) * rows / chunk


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--samples", type=int, default=5000)
    args = parser.parse_args()
    from tfp_vae import evaluate, models, pretrained, saved
    x = (np.random.default_rng(0).random((args.images, 784)) < 0.13).astype(np.float32)

    def batches():
        return [(x[i:i + 500], None) for i in range(0, len(x), 500)]
    scale = 10_000 / args.images
    sources = {"Keras model (bin/train)": models.VAE(z_dim=10),
               "SavedModel (bin/evaluate)": saved.SavedVAE(pretrained.path("vae"))}
    rows = args.samples * 10_000
    flop = 2 * rows * sum(a * b for a, b in zip(DECODER[:-1], DECODER[1:]))
    rate = matmul_rate()
    floor = matmul_floor(args.samples * args.images) * scale
    print(f"NLL-{args.samples} of 10,000 images (timed on {args.images}, x {scale:g}); floor: "
          f"the decoder's products {floor:.0f} s as bare matmuls, {flop / rate / 1e9:.0f} s at "
          f"{rate:.0f} GFLOP/s ({flop:.2e} FLOP)")
    for name, source in sources.items():
        iwae = evaluate.bounds(source)[1]
        evaluate.test_log_likelihood(iwae, batches()[:1], 2)  # traced once, then timed once
        t0 = time.perf_counter()
        evaluate.test_log_likelihood(iwae, batches(), args.samples)
        seconds = time.perf_counter() - t0
        print(f"  {name}: {seconds * scale:.0f} s, {seconds * scale / floor:.2f}x the bare "
              f"matmuls", flush=True)


if __name__ == "__main__":
    main()
