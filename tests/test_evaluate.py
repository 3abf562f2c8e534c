"""The reference evaluation protocol (REFERENCE.md section 7), on stand-in bounds that record
how they are called."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from tfp_vae import evaluate, models


def test_reference_protocol_calls_each_bound_as_the_reference_does():
    """100 calls of the NELBO and max(100 // m, 1) calls of -IWAE-m (100, 10, 1, 1) for m in
    (1, 10, 100, 1000), each call with its own seed, on the whole subset at once; each number is
    the mean over its calls of the per-image mean."""
    x = tf.zeros([100, 4])
    elbo_seeds, iwae_calls = [], collections.defaultdict(list)

    def negative_elbo(images, seed):
        assert images.shape == (100, 4)
        elbo_seeds.append(tuple(seed.numpy()))
        r = float(len(elbo_seeds))
        return tf.fill([100], 3 * r), tf.fill([100], r), tf.fill([100], 2 * r)

    def negative_iwae(images, m, seed):
        assert images.shape == (100, 4)
        calls = iwae_calls[int(m)]
        calls.append(tuple(seed.numpy()))
        value = tf.fill([100], float(len(calls)) + int(m))
        return value, value, value

    result = evaluate.reference_protocol(negative_elbo, negative_iwae, x, seed=0)

    assert len(elbo_seeds) == 100 and len(set(elbo_seeds)) == 100
    assert {m: len(calls) for m, calls in iwae_calls.items()} == {1: 100, 10: 10, 100: 1, 1000: 1}
    every_seed = elbo_seeds + [s for calls in iwae_calls.values() for s in calls]
    assert len(set(every_seed)) == len(every_seed)  # no draws shared between bounds or repeats
    assert result["nelbo"]["n"] == 100 and result["nelbo"]["mean"] == 3 * 50.5
    assert result["kl"]["mean"] == 50.5 and result["rec"]["mean"] == 2 * 50.5
    np.testing.assert_allclose(result["nelbo"]["se"], np.arange(3, 301, 3).std(ddof=1) / 10)
    assert [result["niwae"][m]["n"] for m in (1, 10, 100, 1000)] == [100, 10, 1, 1]
    assert [result["niwae"][m]["mean"] for m in (1, 10, 100, 1000)] == [51.5, 15.5, 101, 1001]
    assert result["niwae"][1000]["se"] is None


@pytest.mark.parametrize("jit", [False, True])
def test_model_bounds_compile_with_xla_only_when_asked(jit):
    """``model_bounds(model, jit_compile=True)`` (timed by benchmarks/iwae_eval.py --jit=0,1)
    marks both functions for XLA; by default neither is. The closed-form KL is the same."""
    model = models.VAE(z_dim=2)
    x = tf.constant(np.random.default_rng(0).random((4, 784)).astype(np.float32))
    elbo, iwae = evaluate.model_bounds(model, jit_compile=jit)
    for fn in (elbo, iwae):
        assert fn.get_concrete_function().function_def.attr["_XlaMustCompile"].b is jit
    kl = elbo(x, tf.constant([0, 0]))[1].numpy()
    reference = evaluate.model_bounds(model)[0](x, tf.constant([0, 0]))[1].numpy()
    np.testing.assert_allclose(kl, reference, rtol=1e-5)
    assert np.isfinite(iwae(x, tf.constant(3), tf.constant([0, 0]))[0].numpy()).all()
