"""The bounds of tfp_vae.bounds against hand computations and a model with known log p(x)."""

import functools
import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import special, stats

from tfp_vae import bounds, distributions, models

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
    out = bounds.negative_elbo(x, q, _bernoulli_decoder(w, b),
                               _normal(np.zeros(2, np.float32), 1.0), seed)
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


# ------------------------------------------------- the GMVAE's mixture prior, log p(x) known
def _log_normal_diag(z, mean, variance):
    """Float64 log N(z; mean, diag(variance)), summed over the last axis."""
    return -0.5 * (np.log(2 * np.pi * variance) + (z - mean) ** 2 / variance).sum(-1)


class MixtureLinearGaussian:
    """The GMVAE's prior with a linear-Gaussian decoder, where everything is Gaussian given the
    component k:

        p(z) = (1/K) sum_k N(z; mu_k, diag(v_k))   (the GMVAE's own ``MixturePrior``),
        p(x|z) = N(x; W z + c, s2 I),
        log p(x) = log (1/K) sum_k N(x; W mu_k + c, C_k),   C_k = W diag(v_k) W^T + s2 I,
        p(z|x) = sum_k r_k(x) N(z; m_k, S_k),   r_k(x) = N(x; W mu_k + c, C_k) / (K p(x)),
        S_k = (diag(1/v_k) + W^T W / s2)^-1,   m_k = S_k (mu_k / v_k + W^T (x - c) / s2).

    The posterior is a mixture, so no Gaussian q is exact: q here is a diagonal Gaussian at the
    posterior mean (shifted) with twice the posterior's marginal variances. The mixture is float32
    (the layer's; its ``Categorical`` logits are float32), the reference values float64 NumPy.
    """

    def __init__(self, seed=0):
        rng = np.random.RandomState(seed)
        self.k, d, D, self.s2 = 3, 2, 3, 0.5
        # The prior of a real GMVAE (its layer and its distribution()), parameters assigned in its
        # own parameterisation: z_pre = [means; raw], variance = softplus(raw) + 1e-8.
        self.gmvae = models.GMVAE(z_dim=d, k=self.k, seed=seed)
        means = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]])
        variances = np.array([[0.3, 1.0], [1.5, 0.2], [0.5, 0.5]])
        raw = np.log(np.expm1(variances - distributions.VARIANCE_FLOOR))
        self.gmvae.prior_layer.z_pre.assign(np.concatenate([means, raw]).astype(np.float32))
        z_pre = self.gmvae.prior_layer.z_pre.numpy().astype(np.float64)  # what float32 holds
        self.mu = z_pre[:self.k]
        self.v = np.logaddexp(0.0, z_pre[self.k:]) + distributions.VARIANCE_FLOOR
        self.w = rng.randn(D, d).astype(np.float32).astype(np.float64)
        self.c = rng.randn(D).astype(np.float32).astype(np.float64)
        component = rng.randint(self.k, size=4)
        z = self.mu[component] + np.sqrt(self.v[component]) * rng.randn(4, d)
        x = z @ self.w.T + self.c + math.sqrt(self.s2) * rng.randn(4, D)
        self.x = x.astype(np.float32)  # 4 draws; image 2's posterior: modes 0.94, 0.05
        self.q_mean, self.q_variance = self._make_q(self.x.astype(np.float64))

    def prior(self):
        return self.gmvae.prior()

    def likelihood(self, z):
        mean = tf.linalg.matvec(tf.constant(self.w, tf.float32), z) + self.c.astype(np.float32)
        return _normal(mean, math.sqrt(self.s2))

    def q(self, copies=1):
        """q(z|x) for ``copies`` stacked copies of the 4 images (float32)."""
        tile = lambda a: np.tile(a, (copies, 1)).astype(np.float32)  # noqa: E731
        return _normal(tile(self.q_mean), tile(np.sqrt(self.q_variance)))

    def log_px_components(self, x):
        """log (1/K) N(x; W mu_k + c, C_k), shape (B, K)."""
        return np.stack([np.log(1 / self.k) + stats.multivariate_normal(
            self.w @ mu + self.c, self.w @ np.diag(v) @ self.w.T + self.s2 * np.eye(len(self.c))
        ).logpdf(x) for mu, v in zip(self.mu, self.v)], 1)

    def log_px(self, x):
        return special.logsumexp(self.log_px_components(x), 1)

    def posterior_components(self, x):
        """r (B, K), m (B, K, d), S (K, d, d) of p(z|x) = sum_k r_k N(m_k, S_k)."""
        log_r = self.log_px_components(x)
        r = np.exp(log_r - special.logsumexp(log_r, 1, keepdims=True))
        s = np.stack([np.linalg.inv(np.diag(1 / v) + self.w.T @ self.w / self.s2)
                      for v in self.v])
        data = (x - self.c) @ self.w / self.s2                    # W^T (x - c) / s2, (B, d)
        m = np.einsum("kij,bkj->bki", s, self.mu / self.v + data[:, None])
        return r, m, s

    def _make_q(self, x):
        r, m, s = self.posterior_components(x)
        mean = np.einsum("bk,bki->bi", r, m)
        second = np.einsum("bk,kii->bi", r, s) + np.einsum("bk,bki->bi", r, m ** 2)
        return mean + 0.3, 2.0 * (second - mean ** 2)

    def log_ratio(self, n, seed):
        """log w(z) - log p(x) = log p(z|x) - log q(z|x) at n draws z ~ q, float64, (n, B)."""
        z = self.q_mean + np.sqrt(self.q_variance) * np.random.RandomState(seed).randn(
            n, *self.q_mean.shape)
        log_prior = special.logsumexp(
            _log_normal_diag(z[:, :, None], self.mu, self.v), -1) - np.log(self.k)
        log_lik = _log_normal_diag(self.x, z @ self.w.T + self.c, self.s2)
        return (log_lik + log_prior - _log_normal_diag(z, self.q_mean, self.q_variance)
                - self.log_px(self.x.astype(np.float64)))


@pytest.fixture(scope="module")
def mlg():
    """The model, -log p(x), and from 400,000 float64 NumPy draws of q (not the project's code):
    the relative variance c2 = Var_q[w / p(x)] and KL(q || p(z|x)) = -E_q[log w / p(x)]."""
    model = MixtureLinearGaussian()
    nll = -model.log_px(model.x.astype(np.float64))
    # Var_q[w/p] is finite iff int p(z|x)^2 / q dz is, which holds when 2 S_k^-1 - diag(1/q_var)
    # is positive definite for every k (the q's tails are heavier than every component's).
    _, _, s = model.posterior_components(model.x.astype(np.float64))
    for variance in model.q_variance:
        for s_k in s:
            assert np.linalg.eigvalsh(2 * np.linalg.inv(s_k) - np.diag(1 / variance)).min() > 0
    n = 400_000
    ratio = model.log_ratio(n, seed=1)
    c2 = np.exp(2 * ratio).mean(0) - 1
    # E_q[w] = p(x): checks the closed form log p(x) (and the posterior) the tests compare to.
    np.testing.assert_allclose(np.exp(ratio).mean(0), 1.0, atol=5 * np.sqrt(c2 / n).max())
    assert np.all(c2 > 0.5) and np.all(c2 < 10), c2  # q is imperfect, but a fair proposal
    return model, nll, c2, -ratio.mean(0), ratio.std(0) / math.sqrt(n)


def _mixture_replicated(model, m, copies, seed):
    """Mean and standard error of ``copies`` independent -IWAE_m of each image, with the GMVAE's
    prior (so the Monte-Carlo KL log q - log p(z) uses the mixture's own log_prob)."""
    xs = np.tile(model.x, (copies, 1))
    prior = model.prior()
    assert isinstance(prior, distributions._DiagonalGaussianMixture)  # the GMVAE's log-density
    out = bounds.negative_iwae(xs, model.q(copies), model.likelihood, prior, m,
                               tf.constant([seed, m]), max_rows=200_000)
    values = out.value.numpy().astype(np.float64).reshape(copies, len(model.x))
    assert np.isfinite(values).all()
    return values.mean(0), values.std(0) / math.sqrt(copies)


def test_mixture_prior_iwae_converges_to_the_closed_form_log_likelihood(mlg):
    """With the GMVAE's mixture prior and a linear-Gaussian decoder, -IWAE_m -> -log p(x) =
    -log (1/K) sum_k N(x; W mu_k + c, W diag(v_k) W^T + s2 I) (float64 NumPy). For large m
    (Nowozin, 2018, "Debiasing evidence approximations"; the delta method)
        E[-IWAE_m] = -log p(x) + c2 / (2m) + O(1/m^2),   sd[-IWAE_m] ~ sqrt(c2 / m),
    c2 = Var_q[w / p(x)] (2.1 to 2.4 here, from NumPy draws): 16 estimates at m = 20,000 have a
    standard error near 0.003 nats, so 5 of them (+ 1e-4 for float32) bound the error. A wrong
    mixture density (weights, constant, log-sum-exp) or a wrong log-mean-exp would miss."""
    model, nll, c2, _, _ = mlg
    assert models.GMVAE.analytic_kl is False  # the GMVAE's bound is this Monte-Carlo KL one
    m, copies = 20_000, 16
    mean, _ = _mixture_replicated(model, m, copies, seed=3)
    tolerance = c2 / (2 * m) + 5 * np.sqrt(c2 / (m * copies)) + 1e-4
    assert np.all(np.abs(mean - nll) < tolerance), (mean - nll, tolerance)


def test_mixture_prior_iwae_decreases_with_m_and_stays_above_negative_log_likelihood(mlg):
    """E[-IWAE_m] does not increase with m and is >= -log p(x) (Burda et al., 2016, Theorem 1),
    checked with 4 standard errors of the replicated means for noise; q is far enough from the
    posterior (a mixture, with two modes for image 2) that the decrease is large. At m = 1 it is
    the negative ELBO, E[-IWAE_1] = -log p(x) + KL(q || p(z|x)), the KL from float64 NumPy draws."""
    model, nll, _, kl, kl_se = mlg
    runs = {m: _mixture_replicated(model, m, copies, seed=11)
            for m, copies in ((1, 20_000), (10, 4000), (100, 1000), (1000, 200))}
    values = {m: mean for m, (mean, _) in runs.items()}
    se = {m: se for m, (_, se) in runs.items()}
    for small, large in ((1, 10), (10, 100), (100, 1000), (1, 1000)):
        noise = 4 * np.sqrt(se[small] ** 2 + se[large] ** 2)
        assert np.all(values[large] < values[small] + noise), (small, large, values)
    for m in values:
        assert np.all(values[m] > nll - 4 * se[m]), (m, values[m] - nll, se[m])
    assert np.all(values[1] > values[10] + 1.0) and np.all(values[10] > values[1000] + 0.05)
    np.testing.assert_allclose(values[1], nll + kl, atol=5 * np.sqrt(se[1] ** 2 + kl_se ** 2).max())


# ------------------------------------------------------------------ property: never NaN in range
from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

_B, _Z, _X, _K = 3, 2, 5, 3


def _floats(shape, bound):
    return hnp.arrays(np.float32, shape, elements=st.floats(-bound, bound, width=32))


@functools.lru_cache(maxsize=None)
def _mixture_layer():
    """One GMVAE prior layer (``MixturePrior``) for every example; each assigns its z_pre."""
    return distributions.MixturePrior(_Z, _K)


@settings(max_examples=30, deadline=None)
@given(h=_floats((_B, 2 * _Z), 60.0), w=_floats((_Z, _X), 30.0), b=_floats((_X,), 30.0),
       x=hnp.arrays(np.float32, (_B, _X), elements=st.floats(0, 1, width=32)),
       locs=_floats((_K, _Z), 60.0), raw=_floats((_K, _Z), 1000.0), m=st.sampled_from([1, 3, 40]),
       max_rows=st.sampled_from([3, 7, 10_000]), seed=st.integers(0, 2**31 - 1))
def test_bounds_are_finite_for_any_finite_input_in_range(h, w, b, x, locs, raw, m, max_rows, seed):
    """Encoder outputs, decoder weights and mixture parameters anywhere in wide ranges (the
    variance head's softplus + 1e-8 keeps q proper), pixels anywhere in [0, 1]: no bound is NaN
    or infinite, for the standard-normal prior (analytic KL) and the GMVAE's own mixture prior
    (its ``MixturePrior`` layer and log-density, Monte-Carlo KL), any m and any chunking.

    The mixture's means lie in [-60, 60] and its raw variances in [-1000, 1000], so the variances
    softplus(raw) + 1e-8 run from the GMVAE's floor 1e-8 (log-variance -18.4: its
    parameterisation allows no less) up to 1000: z is then typically thousands of standard
    deviations from every component, where each exp(log N(z; mu_j, v_j)) underflows to 0 and
    only a max-shifted log-sum-exp keeps log p(z) = log (1/K) sum_j N(z; mu_j, v_j) finite."""
    q = distributions.DiagonalGaussian()(h)
    likelihood = lambda z: distributions.BernoulliLogits()(tf.tensordot(z, w, 1) + b)  # noqa
    layer = _mixture_layer()
    layer.z_pre.assign(np.concatenate([locs, raw]))
    mixture_prior = layer.distribution()
    seed = tf.constant([seed, 1])
    for prior, analytic in ((_normal(np.zeros(_Z, np.float32), 1.0), True), (mixture_prior, False)):
        elbo = bounds.negative_elbo(x, q, likelihood, prior, seed, analytic_kl=analytic)
        iwae = bounds.negative_iwae(x, q, likelihood, prior, m, seed, max_rows=max_rows)
        for bound in (elbo, iwae):
            for part in bound:
                assert np.isfinite(part.numpy()).all(), (bound, h, w, b, x, locs, raw)


def test_philox_normal_draws_as_tfd_normal_without_xla_and_fast_valid_draws_with_it():
    """The encoder's Gaussian names the Philox generator: without XLA its draws are tfd.Normal's
    bit for bit (the runs made before it are unchanged); under XLA they are a fixed function of
    the seed with the right mean and spread."""
    loc, scale = tf.constant([[0.5, -2.0, 3.0]]), tf.constant([[1.0, 0.1, 2.0]])
    seed = tf.constant([4, 2])
    ours = distributions.PhiloxNormal(loc, scale)
    np.testing.assert_array_equal(ours.sample(7, seed=seed),
                                  tfd.Normal(loc, scale).sample(7, seed=seed))
    draw = tf.function(lambda s: ours.sample(20000, seed=s), jit_compile=True)
    first, again = draw(seed).numpy(), draw(seed).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, draw(tf.constant([4, 3])).numpy())
    np.testing.assert_allclose(first.mean(0), loc, atol=4 * 2.0 / np.sqrt(20000))
    np.testing.assert_allclose(first.std(0), scale, rtol=0.03)


def test_kl_warmup_weight_rises_linearly_from_zero_to_one_then_stays():
    weights = [float(bounds.kl_warmup_weight(step, 100)) for step in (0, 1, 50, 99, 100, 5000)]
    np.testing.assert_allclose(weights, [0.0, 0.01, 0.5, 0.99, 1.0, 1.0], rtol=1e-7)
