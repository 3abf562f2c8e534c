"""Variational bounds on -log p(x) as pure functions of distributions.

Every function takes

* ``x``: a batch of observations, shape (B, D);
* ``posterior``: q(z | x), a distribution with batch shape (B,) and event shape (d,);
* ``likelihood``: a callable ``z -> p(x | z)``; ``z`` may carry leading sample axes (S, B, d)
  and the result must broadcast against ``x`` (conditional models close over their label here);
* ``prior``: p(z), event shape (d,);
* ``seed``: a stateless seed (int32 tensor of shape [2]): the same seed gives the same value;

and returns per-example values (shape (B,)); averaging over the batch is the caller's business.
Nothing here knows about Keras or a model.
"""

import math
from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


class Bound(NamedTuple):
    """Per-example value of a negative bound and its two parts: ``value = kl + rec``."""
    value: tf.Tensor
    kl: tf.Tensor
    rec: tf.Tensor


def log_importance_weights(x, posterior, likelihood, prior, z):
    """log w(z) = log p(x | z) + log p(z) - log q(z | x), elementwise over the leading axes of z.

    Returns:
      A :class:`Bound` of ``-log w = kl + rec`` with ``kl = log q(z|x) - log p(z)`` (the
      single-sample Monte-Carlo KL) and ``rec = -log p(x | z)``.
    """
    rec = -likelihood(z).log_prob(x)
    kl = posterior.log_prob(z) - prior.log_prob(z)
    return Bound(kl + rec, kl, rec)


def negative_elbo(x, posterior, likelihood, prior, seed, analytic_kl=True):
    """Single-sample estimate of the negative evidence lower bound (Kingma & Welling, 2014):

        -ELBO(x) = KL(q(z|x) || p(z)) + E_{q(z|x)}[-log p(x|z)]
                 ~ KL + (-log p(x | z)),   one z ~ q(z|x) (reparameterised).

    Args:
      analytic_kl: use the closed-form KL (``tfd.kl_divergence``; the VAE, SSVAE, FSVAE of the
        reference); otherwise the Monte-Carlo KL ``log q(z|x) - log p(z)`` at the *same* z as the
        reconstruction term (the GMVAE, whose mixture prior has no closed-form KL).
    Returns:
      A per-example :class:`Bound`. With ``analytic_kl=False`` and the same seed this equals
      :func:`negative_iwae` with ``num_samples=1`` exactly.
    """
    z = posterior.sample(seed=seed)
    if not analytic_kl:
        return log_importance_weights(x, posterior, likelihood, prior, z)
    rec = -likelihood(z).log_prob(x)
    kl = tfd.kl_divergence(posterior, prior)
    return Bound(kl + rec, kl, rec)


def _chunk_seed(seed, i):
    # Chunk 0 uses the caller's seed itself, so that IWAE-1 draws the same z as negative_elbo.
    return tf.where(tf.equal(i, 0), seed, tf.random.experimental.stateless_fold_in(seed, i))


def negative_iwae(x, posterior, likelihood, prior, num_samples, seed, max_rows=10_000):
    """Negative importance-weighted bound IWAE-m (Burda, Grosse & Salakhutdinov, 2016):

        -IWAE_m(x) = -log (1/m) sum_{i=1..m} p(x, z_i) / q(z_i | x),   z_i ~ q(z | x) iid,

    computed **per example**: the log-mean-exp runs over the m samples of the same x, never across
    examples (mixing them is the grouping bug of REFERENCE.md section 11). ``-IWAE_1`` is the
    single-sample negative ELBO with Monte-Carlo KL; ``-IWAE_m`` does not increase with m in
    expectation and tends to ``-log p(x)``.

    The m samples are drawn in chunks of at most ``max_rows`` (sample, example) rows, and the
    log-sum-exp is accumulated across chunks, so memory does not grow with m.

    Args:
      num_samples: m >= 1 (Python int or int tensor).
      max_rows: bound on samples-per-chunk * batch size.
    Returns:
      A per-example :class:`Bound`: ``value = -IWAE_m``; ``kl`` and ``rec`` are the means over the
      m samples of ``log q - log p(z)`` and ``-log p(x|z)`` (as the reference reports them).
    """
    m = tf.convert_to_tensor(num_samples, tf.int32)
    tf.debugging.assert_positive(m, message="negative_iwae needs num_samples >= 1")
    batch = tf.shape(x)[0]
    per_chunk = tf.minimum(m, tf.maximum(1, max_rows // tf.maximum(batch, 1)))
    num_chunks = (m + per_chunk - 1) // per_chunk
    zeros = tf.zeros([batch], x.dtype)

    def body(i, log_sum, kl_sum, rec_sum):
        z = posterior.sample(per_chunk, seed=_chunk_seed(seed, i))
        w = log_importance_weights(x, posterior, likelihood, prior, z)
        valid = (i * per_chunk + tf.range(per_chunk) < m)[:, None]
        log_w = tf.where(valid, -w.value, -math.inf)
        log_sum = tf.reduce_logsumexp(tf.stack([log_sum, tf.reduce_logsumexp(log_w, 0)]), 0)
        kl_sum += tf.reduce_sum(tf.where(valid, w.kl, 0.0), 0)
        rec_sum += tf.reduce_sum(tf.where(valid, w.rec, 0.0), 0)
        return i + 1, log_sum, kl_sum, rec_sum

    _, log_sum, kl_sum, rec_sum = tf.while_loop(
        lambda i, *_: i < num_chunks, body, (tf.constant(0), zeros - math.inf, zeros, zeros))
    m_float = tf.cast(m, x.dtype)
    return Bound(tf.math.log(m_float) - log_sum, kl_sum / m_float, rec_sum / m_float)
