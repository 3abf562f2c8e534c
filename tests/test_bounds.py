"""The bounds of tfp_vae.bounds against hand computations and a model with known log p(x)."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import bounds

tfd = tfp.distributions


def _normal(loc, scale):
    return tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=1)


def _bernoulli_decoder(w, b):
    return lambda z: tfd.Independent(tfd.Bernoulli(logits=z @ w + b, dtype=tf.float32), 1)


def test_negative_elbo_matches_hand_computation():
    rng = np.random.RandomState(0)
    m, v = rng.randn(3, 2).astype(np.float32), rng.uniform(0.2, 2, (3, 2)).astype(np.float32)
    w, b = rng.randn(2, 4).astype(np.float32), rng.randn(4).astype(np.float32)
    x = rng.binomial(1, 0.5, (3, 4)).astype(np.float32)
    q = _normal(m, np.sqrt(v))
    seed = tf.constant([1, 2])
    out = bounds.negative_elbo(x, q, _bernoulli_decoder(w, b), _normal(np.zeros(2, np.float32), 1.0),
                               seed)
    z = q.sample(seed=seed).numpy()
    logits = z @ w + b
    p = 1 / (1 + np.exp(-logits))
    rec = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(1)
    kl = 0.5 * (-np.log(v) + v + m ** 2 - 1).sum(1)  # the reference's kl_normal(m, v, 0, 1)
    np.testing.assert_allclose(out.rec, rec, rtol=1e-5)
    np.testing.assert_allclose(out.kl, kl, rtol=1e-5)
    np.testing.assert_allclose(out.value, kl + rec, rtol=1e-5)
    mc = bounds.negative_elbo(x, q, _bernoulli_decoder(w, b), _normal(np.zeros(2, np.float32), 1.0),
                              seed, analytic_kl=False)
    log_q = (-0.5 * np.log(2 * np.pi * v) - (z - m) ** 2 / (2 * v)).sum(1)
    log_p = (-0.5 * np.log(2 * np.pi) - z ** 2 / 2).sum(1)
    np.testing.assert_allclose(mc.kl, log_q - log_p, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mc.rec, rec, rtol=1e-5)


class LinearGaussian:
    """p(z) = N(0, I_d), p(x|z) = N(W z + c, s2 I_D): log p(x) = log N(x; c, W W^T + s2 I) and
    the posterior p(z|x) = N(S W^T (x - c) / s2, S) with S = (I + W^T W / s2)^-1 are exact."""

    def __init__(self, d=2, D=5, s2=0.3, seed=0):
        rng = np.random.RandomState(seed)
        self.w = rng.randn(D, d).astype(np.float64)
        self.c = rng.randn(D).astype(np.float64)
        self.s2 = s2
        self.prior = _normal(tf.zeros(d, tf.float64), tf.constant(1.0, tf.float64))
        self.cov_post = np.linalg.inv(np.eye(d) + self.w.T @ self.w / s2)

    def likelihood(self, z):
        return _normal(tf.linalg.matvec(self.w, z) + self.c, math.sqrt(self.s2))

    def log_px(self, x):
        cov = self.w @ self.w.T + self.s2 * np.eye(len(self.c))
        return tfd.MultivariateNormalFullCovariance(self.c, cov).log_prob(x).numpy()

    def posterior(self, x, inflate=1.0, shift=0.0):
        mean = (self.cov_post @ self.w.T @ (x - self.c).T).T / self.s2 + shift
        # A full-covariance exact posterior; inflate/shift make it imperfect.
        return tfd.MultivariateNormalFullCovariance(mean, self.cov_post * inflate)


@pytest.fixture(scope="module")
def lg():
    model = LinearGaussian()
    x = np.random.RandomState(1).randn(6, 5) * 2.0
    x[0] *= 10  # One image far less likely than the rest: mixing examples would show.
    return model, x


@pytest.mark.parametrize("m, max_rows", [(1, 10_000), (7, 6), (7, 30), (100, 42), (100, 10_000),
                                         (1000, 600), (1000, 10_000)])
def test_iwae_is_exact_with_the_true_posterior(lg, m, max_rows):
    """With q = p(z|x) every weight equals p(x): -IWAE_m = -log p(x) exactly, per example, for
    every m and any chunking (a wrong sample count or a cross-example mix would shift it)."""
    model, x = lg
    out = bounds.negative_iwae(x, model.posterior(x), model.likelihood, model.prior, m,
                               tf.constant([3, m]), max_rows=max_rows)
    np.testing.assert_allclose(out.value, -model.log_px(x), rtol=1e-9, atol=1e-9)


def _replicated_mean(model, x, q_args, m, copies, seed):
    """Mean of -IWAE_m over ``copies`` independent estimates per example, in one batched call."""
    xs = np.tile(x, (copies, 1))
    out = bounds.negative_iwae(xs, model.posterior(xs, *q_args), model.likelihood, model.prior, m,
                               tf.constant([seed, m]), max_rows=200_000)
    return out.value.numpy().reshape(copies, len(x)).mean(0)


def test_iwae_decreases_with_m_and_stays_above_negative_log_likelihood(lg):
    model, x = lg
    values = {m: _replicated_mean(model, x, (2.0, 0.2), m, copies, 11)
              for m, copies in ((1, 20000), (10, 4000), (100, 1000), (1000, 200))}
    nll = -model.log_px(x)
    # Gaps shrink with m (about 0.01 nats from 100 to 1000 here), so allow twice that for MC noise.
    for small, large in ((1, 10), (10, 100), (100, 1000)):
        assert np.all(values[large] < values[small] + 0.02), (small, large, values)
    assert np.all(values[10] < values[1] - 0.3) and np.all(values[100] < values[10] - 0.01)
    assert np.all(values[1000] > nll - 0.01) and np.all(values[1] > values[1000] + 0.1)
    # -IWAE_m >= -log p(x) in expectation (the 0.01 is MC noise); it converges to -log p(x).
    np.testing.assert_allclose(values[1000], nll, atol=0.05)


def test_iwae_1_equals_the_monte_carlo_elbo_for_the_same_seed(lg):
    model, x = lg
    q = model.posterior(x, inflate=2.0, shift=0.3)
    seed = tf.constant([7, 8])
    iwae = bounds.negative_iwae(x, q, model.likelihood, model.prior, 1, seed)
    elbo = bounds.negative_elbo(x, q, model.likelihood, model.prior, seed, analytic_kl=False)
    for a, b in zip(iwae, elbo):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_iwae_1_equals_the_analytic_elbo_in_expectation(lg):
    model, x = lg
    copies = 20_000
    xs = np.tile(x, (copies, 1))
    q = _normal(tf.constant(np.tile(np.random.RandomState(2).randn(6, 2), (copies, 1))),
                tf.constant(1.3, tf.float64))
    # The same seed draws the same z (common random numbers): the two then differ only by the
    # Monte-Carlo KL against the analytic KL, whose difference has mean zero.
    iwae = bounds.negative_iwae(xs, q, model.likelihood, model.prior, 1, tf.constant([0, 0]))
    elbo = bounds.negative_elbo(xs, q, model.likelihood, model.prior, tf.constant([0, 0]))
    np.testing.assert_array_equal(iwae.rec, elbo.rec)
    mean = lambda v: v.numpy().reshape(copies, len(x)).mean(0)  # noqa: E731
    np.testing.assert_allclose(mean(iwae.value), mean(elbo.value), rtol=0.002)
    np.testing.assert_allclose(mean(iwae.kl), elbo.kl.numpy()[:6], rtol=0.02, atol=0.02)


def test_iwae_per_example_does_not_depend_on_the_batch(lg):
    """The §11 grouping bug makes an image's bound depend on the other images in the batch."""
    model, x = lg
    together = _replicated_mean(model, x, (2.0, 0.2), 100, 500, seed=5)
    alone = np.array([_replicated_mean(model, x[i:i + 1], (2.0, 0.2), 100, 500, seed=6)[0]
                      for i in range(len(x))])
    np.testing.assert_allclose(together, alone, atol=0.05)
    assert together[0] > together[1:].max() + 50  # the hard image keeps its own, large value


# ------------------------------------------------------------------ property: never NaN in range
from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from tfp_vae import distributions  # noqa: E402

_B, _Z, _X = 3, 2, 5


def _floats(shape, bound):
    return hnp.arrays(np.float32, shape, elements=st.floats(-bound, bound, width=32))


@settings(max_examples=60, deadline=None)
@given(h=_floats((_B, 2 * _Z), 60.0), w=_floats((_Z, _X), 30.0), b=_floats((_X,), 30.0),
       x=hnp.arrays(np.float32, (_B, _X), elements=st.floats(0, 1, width=32)),
       mixture=_floats((2, 2 * _Z), 60.0), m=st.sampled_from([1, 3, 40]),
       max_rows=st.sampled_from([3, 7, 10_000]), seed=st.integers(0, 2**31 - 1))
def test_bounds_are_finite_for_any_finite_input_in_range(h, w, b, x, mixture, m, max_rows, seed):
    """Encoder outputs, decoder weights and mixture parameters anywhere in wide ranges (the
    variance head's softplus + 1e-8 keeps q proper), pixels anywhere in [0, 1]: no bound is NaN
    or infinite, for the standard-normal and the mixture prior, analytic or Monte-Carlo KL, any
    m and any chunking."""
    q = distributions.DiagonalGaussian()(h)
    likelihood = lambda z: distributions.BernoulliLogits()(tf.tensordot(z, w, 1) + b)  # noqa
    mean, variance = distributions.gaussian_parameters(mixture)
    mixture_prior = tfd.MixtureSameFamily(
        tfd.Categorical(logits=tf.zeros(2)),
        tfd.Independent(tfd.Normal(mean, tf.sqrt(variance)), reinterpreted_batch_ndims=1))
    seed = tf.constant([seed, 1])
    for prior, analytic in ((_normal(np.zeros(_Z, np.float32), 1.0), True), (mixture_prior, False)):
        elbo = bounds.negative_elbo(x, q, likelihood, prior, seed, analytic_kl=analytic)
        iwae = bounds.negative_iwae(x, q, likelihood, prior, m, seed, max_rows=max_rows)
        for bound in (elbo, iwae):
            for part in bound:
                assert np.isfinite(part.numpy()).all(), (bound, h, w, b, x)
