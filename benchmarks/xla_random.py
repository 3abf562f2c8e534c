"""TensorFlow's stateless random draws with and without XLA, by generator.

    python benchmarks/xla_random.py          # a few seconds

Times ``tf.random.stateless_uniform`` of a (97, 784) batch (a training batch of MNIST pixels)
inside a loop of 100 calls, for the automatically selected generator (what TFP's samplers use)
and for Philox and ThreeFry named explicitly, without and with ``jit_compile``. On this CPU the
automatic choice compiles under XLA to a generator about 20 times slower than Philox, which is
why :class:`tfp_vae.distributions.PhiloxNormal` names Philox (docs/design.md). Also checks that,
without XLA, the automatic choice and Philox give the same numbers.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SHAPE, CALLS = (97, 784), 100


def ms_per_call(alg, jit):
    draw = tf.function(lambda i: tf.reduce_sum(tf.random.stateless_uniform(
        SHAPE, seed=tf.stack([5, i]), alg=alg)), jit_compile=jit)

    @tf.function
    def loop():
        total = tf.constant(0.0)
        for i in tf.range(CALLS):
            total += draw(i)
        return total

    loop().numpy()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        loop().numpy()
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best / CALLS


def main():
    for alg in ("auto_select", "philox", "threefry"):
        for jit in (False, True):
            try:
                result = f"{ms_per_call(alg, jit):.3f} ms"
            except tf.errors.OpError as e:  # e.g. ThreeFry has no CPU kernel outside XLA
                result = f"not available ({type(e).__name__})"
            print(f"stateless_uniform {SHAPE}, alg={alg}, jit_compile={jit}: {result}",
                  flush=True)
    seed = tf.constant([7, 3])
    same = np.array_equal(tf.random.stateless_normal([4, 5], seed=seed),
                          tf.random.stateless_normal([4, 5], seed=seed, alg="philox"))
    print(f"without XLA, auto_select draws equal philox draws: {same}")


if __name__ == "__main__":
    main()
