"""Speed of tfp_vae on this machine, as a ratio to what its matrix-multiply rate allows.

    python benchmarks/bench.py            # about two minutes on 2 CPU cores

Measures, in one run:
* the machine's float32 matmul rate (TensorFlow, 2048 x 2048, all cores): the "peak";
* VAE training steps per second at batch 97 through ``model.fit`` on the reference data stream,
  for a few settings of ``steps_per_execution`` / ``jit_compile``; the same for the SSVAE (gw = 1:
  97 unlabelled images, each through the encoder and decoder once per label, plus the classifier
  on them and on the 100 labelled images);
* the time of the reference subset IWAE-1000 evaluation (100 images x 1000 samples);
and for each the floor: the matmul FLOPs of the work divided by the peak rate.

FLOP counts (dense layers only; activations, sampling and the optimiser are extra work that the
floor does not count): a forward pass over a batch of B rows through a layer of fan_in x fan_out
costs 2 B fan_in fan_out; a training step costs the forward pass, the weight gradients (same
again) and the input gradients (same again, except for the first encoder layer, whose input
gradient is not needed).
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfp_vae import data, evaluate, models  # noqa: E402


def matmul_rate(n=2048, repeats=20):
    """Measured float32 matmul FLOP/s (best of a few timed batches)."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    f = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    f(a, b).numpy()
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            f(a, b).numpy()
        best = max(best, 2 * n ** 3 * repeats / (time.perf_counter() - t0))
    return best


def dense_shapes(layer):
    return [(int(v.shape[0]), int(v.shape[1])) for v in layer.trainable_variables
            if len(v.shape) == 2]


def train_step_flops(parts):
    """``parts``: (network, rows, takes_data) triples; a network fed by data needs no gradient
    with respect to its input."""
    total = 0
    for network, rows, takes_data in parts:
        shapes = dense_shapes(network)
        forward = sum(2 * rows * i * o for i, o in shapes)
        total += 3 * forward - (2 * rows * shapes[0][0] * shapes[0][1] if takes_data else 0)
    return total


def iwae_flops(model, images, samples):
    """Encoder once per image, decoder once per (sample, image) row."""
    enc = sum(2 * images * i * o for i, o in dense_shapes(model.encoder))
    dec = sum(2 * images * samples * i * o for i, o in dense_shapes(model.decoder))
    return enc + dec


def train_speed(mnist, steps, spe, jit, kind="vae", batch=97):
    model = models.get(kind)()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=spe,
                  jit_compile=jit)
    if kind == "ssvae":
        xl, yl = data.labelled_subset(mnist)
        ds = data.semisupervised_dataset(mnist.train_images, mnist.train_labels, xl, yl, batch, 0)
    else:
        ds = data.train_dataset(mnist.train_images, batch, seed=0)
    model.fit(ds, epochs=1, steps_per_epoch=max(100, spe), verbose=0)  # trace and warm up
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
    return steps / (time.perf_counter() - t0), model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="timed training steps per setting")
    args = parser.parse_args()
    mnist = data.load_mnist()
    peak = matmul_rate()
    print(f"tfp_vae benchmark  {time.strftime('%Y-%m-%d')}  {platform.processor() or platform.machine()}"
          f"  {os.cpu_count()} cores  TF {tf.__version__}  Keras {keras.__version__}")
    print(f"float32 matmul peak (2048^3, TensorFlow): {peak / 1e9:.1f} GFLOP/s\n")
    print(f"| {'work':<45} | {'measured':>12} | {'floor':>12} | {'ratio':>6} |")
    print(f"|{'-' * 47}|{'-' * 14}|{'-' * 14}|{'-' * 8}|")
    for kind, spe, jit in (("vae", 1, False), ("vae", 10, False), ("vae", 10, True),
                           ("ssvae", 1, False), ("ssvae", 10, False)):
        steps = args.steps if kind == "vae" else max(args.steps // 10, 10)
        rate, trained = train_speed(mnist, steps, spe, jit, kind)
        if kind == "vae":
            model = trained
            parts = [(trained.encoder, 97, True), (trained.decoder, 97, False)]
        else:
            parts = [(trained.encoder, 970, True), (trained.decoder, 970, False),
                     (trained.classifier, 197, True)]
        floor = train_step_flops(parts) / peak
        label = f"{kind.upper()} train step, batch 97, spe={spe}, jit={jit}"
        print(f"| {label:<45} | {1e3 / rate:>9.2f} ms | {floor * 1e3:>9.2f} ms | "
              f"{1 / rate / floor:>5.1f}x |", flush=True)
    elbo, iwae = evaluate.model_bounds(model)
    x, _ = data.test_subset(mnist)
    iwae(x, tf.constant(1000), tf.constant([0, 0]))  # trace
    t0 = time.perf_counter()
    iwae(x, tf.constant(1000), tf.constant([0, 1]))[0].numpy()
    seconds = time.perf_counter() - t0
    floor = iwae_flops(model, 100, 1000) / peak
    print(f"| {'subset IWAE-1000 (100 images x 1000 samples)':<45} | {seconds:>10.2f} s | "
          f"{floor:>10.2f} s | {seconds / floor:>5.1f}x |")


if __name__ == "__main__":
    main()
