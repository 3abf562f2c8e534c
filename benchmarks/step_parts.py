"""Where the reference VAE's training step goes, in one process: its parts under XLA, the whole
step, Keras' loop, the input stream, and the floor.

    python benchmarks/step_parts.py --rounds=3

The reference VAE (784-300-300 ELU MLPs, z = 10, batch 97, Adam 1e-3) on MNIST, each figure the
best of ``--rounds`` in ms per step:

* ``forward``, ``forward + gradients``, ``Adam alone`` (the update with fixed gradients) and
  ``whole step``: 50 steps in one XLA computation, called 20 times;
* ``whole step, one XLA call a step``: the same step compiled alone and called from a
  TensorFlow loop, as Keras' ``fit`` with ``steps_per_execution`` runs it;
* ``fit, real stream`` / ``fit, cached stream``: Keras' ``fit`` (XLA, 50 steps a call, as
  ``bin/train``) over 2,500 steps of the training stream (shuffled and binarised anew each step)
  and of one epoch of its batches cached, so the difference is what the stream costs the step;
* ``the stream alone``: the training stream's batches taken one by one, with its CPU time;
* ``a batch's Bernoulli draw inside XLA``: what binarising in the step instead of the stream
  would add to it: the (97, 784) uniform draw and comparison of dynamic binarisation with XLA's
  own Philox generator, 50 in one XLA computation;
* ``the step's matrix products alone``: its 17 products (6 forward, 6 weight gradients, 5 input
  gradients) at their shapes (batch 97), bare, 50 steps in one XLA computation: the floor the
  step's shapes allow on this machine;
* the floor: the step's matrix products (``speed.step_flop``) at the 2048^3 product's rate.
"""

import argparse
import functools
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from nll import timed  # noqa: E402
from speed import matmul_rate, step_flop  # noqa: E402

LOOP = 50   # steps in one XLA computation (bin/train's steps_per_execution)
CALLS = 20  # calls per round


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def best_ms(function, steps, rounds):
    """Best wall ms per step of ``function()`` (``steps`` steps a call) over ``rounds``."""
    return timed(function, repeats=rounds) / steps * 1e3


def xla_loop(step):
    """``LOOP`` calls of ``step(i)`` in one XLA computation, ``CALLS`` times."""
    import tensorflow as tf

    @tf.function(jit_compile=True, autograph=False)
    def loop():
        def body(i, total):
            return i + 1, total + step(i)
        return tf.while_loop(lambda i, _: i < LOOP, body, (tf.constant(0), tf.constant(0.0)))[1]
    return lambda: [loop().numpy() for _ in range(CALLS)]


def model_parts(x, rounds):
    """The step's parts and the whole step, ms per step."""
    import keras
    import tensorflow as tf
    from tfp_vae import models
    model = models.VAE(seed=0)
    model(x[:2])
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    weights = model.trainable_variables
    fixed = [tf.fill(w.shape, 1e-3) for w in weights]

    def loss(i):
        return model.loss_and_terms(x, tf.stack([0, i]))[0]

    def gradients(i):
        with tf.GradientTape() as tape:
            value = loss(i)
        return value, tape.gradient(value, weights)

    def total(tensors):  # every element used, so that XLA computes all of each gradient
        return tf.add_n([tf.reduce_sum(g) for g in tensors])

    def adam(i):
        optimizer.apply(fixed, weights)
        return weights[0][0, 0]

    def step(i):
        value, grads = gradients(i)
        optimizer.apply(grads, weights)
        return value

    one = tf.function(step, jit_compile=True, autograph=False)

    @tf.function(autograph=False)
    def called():
        return tf.while_loop(lambda i, _: i < LOOP, lambda i, t: (i + 1, t + one(i)),
                             (tf.constant(0), tf.constant(0.0)))[1]

    def draw(i):  # dynamic binarisation with XLA's Philox (the automatic choice is far slower)
        u = tf.random.stateless_uniform(tf.shape(x), seed=tf.stack([0, i]), alg="philox")
        return tf.reduce_sum(tf.cast(u < x, tf.float32))

    steps = LOOP * CALLS
    return {"forward": best_ms(xla_loop(loss), steps, rounds),
            "forward + gradients": best_ms(
                xla_loop(lambda i: total(gradients(i)[1])), steps, rounds),
            "Adam alone": best_ms(xla_loop(adam), steps, rounds),
            "whole step": best_ms(xla_loop(step), steps, rounds),
            "whole step, one XLA call a step": best_ms(
                lambda: [called().numpy() for _ in range(CALLS)], steps, rounds),
            "a batch's Bernoulli draw inside XLA (not in the step)": best_ms(
                xla_loop(draw), steps, rounds)}


def step_products(rounds, batch=97):
    """The step's matrix products alone, at their shapes, ms per step: each layer's forward
    product, its weight gradient and (but for the encoder's first layer, whose input is the data)
    its input gradient, for the encoder 784-300-300-20 and the decoder 10-300-300-784.

    The products are the loop's carried values, and each step's inputs depend on the last step's
    products, so that XLA can neither hoist them out of the loop nor compute only what is read.
    """
    import tensorflow as tf
    layers = [(a, b) for sizes in ((784, 300, 300, 20), (10, 300, 300, 784))
              for a, b in zip(sizes[:-1], sizes[1:])]
    weights = [tf.random.normal([a, b]) for a, b in layers]
    inputs = [tf.random.normal([batch, a]) for a, _ in layers]
    grads = [tf.random.normal([batch, b]) for _, b in layers]

    def products(shift):
        out = []
        for k, (x, w, g) in enumerate(zip(inputs, weights, grads)):
            x, g = x + shift, g + shift
            out += [tf.linalg.matmul(x, w), tf.linalg.matmul(x, g, transpose_a=True)]
            if k:
                out.append(tf.linalg.matmul(g, w, transpose_b=True))
        return out

    @tf.function(jit_compile=True, autograph=False)
    def loop():
        def body(i, out):
            return i + 1, products(tf.add_n([o[0, 0] for o in out]) * 1e-30)
        return tf.while_loop(lambda i, _: i < LOOP, body, (tf.constant(0), products(0.0)))[1]
    return best_ms(lambda: [loop()[0].numpy() for _ in range(CALLS)], LOOP * CALLS, rounds)


def keras_fit(stream, per_epoch, rounds):
    """Keras' fit, as bin/train compiles it, on the real and the cached stream, ms per step."""
    import keras
    from tfp_vae import models
    cached = stream.take(per_epoch).cache().repeat()
    results = {}
    for name, data in (("fit, real stream", stream), ("fit, cached stream", cached)):
        model = models.VAE(seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True,
                      steps_per_execution=LOOP)
        results[name] = best_ms(functools.partial(model.fit, data, steps_per_epoch=2500,
                                                  verbose=0), 2500, rounds)
    return results


def stream_alone(stream, batches=3000):
    """Wall and CPU ms per batch of taking the stream's batches one by one."""
    iterator = iter(stream)
    for _ in range(100):
        next(iterator)
    wall, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(batches):
        next(iterator)
    return ((time.perf_counter() - wall) / batches * 1e3,
            (cpu_seconds() - cpu) / batches * 1e3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from tfp_vae import data
    mnist = data.load_mnist()
    stream = data.train_dataset(mnist.train_images, 97, seed=0)
    x = next(iter(stream))
    per_epoch = data.steps_per_epoch(len(mnist.train_images), 97)
    rate = matmul_rate()
    times = {"the step's matrix products alone, at their shapes": step_products(args.rounds),
             **model_parts(x, args.rounds), **keras_fit(stream, per_epoch, args.rounds)}
    wall, cpu = stream_alone(stream)
    floor = step_flop("vae") / rate / 1e6
    print(f"The reference VAE's training step, ms per step (best of {args.rounds}); floor: its "
          f"matrix products at {rate:.0f} GFLOP/s = {floor:.2f} ms\n")
    print("| part | ms per step | / floor |\n|---|---|---|")
    for name, ms in times.items():
        print(f"| {name} | {ms:.2f} | {ms / floor:.1f}x |")
    print(f"| the stream alone (not in the step; CPU {cpu:.2f} ms a batch) | {wall:.2f} | - |")


if __name__ == "__main__":
    main()
