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
        reference) where TFP has one for the pair; otherwise the Monte-Carlo KL
        ``log q(z|x) - log p(z)`` at the *same* z as the reconstruction term (the GMVAE, whose
        mixture prior has no closed-form KL).
    Returns:
      A per-example :class:`Bound`. With ``analytic_kl=False`` and the same seed this equals
      :func:`negative_iwae` with ``num_samples=1`` exactly.
    """
    z = posterior.sample(seed=seed)
    if analytic_kl:
        try:
            kl = tfd.kl_divergence(posterior, prior)
        except NotImplementedError:  # no closed form for this pair in TFP: Monte Carlo
            analytic_kl = False
    if not analytic_kl:
        return log_importance_weights(x, posterior, likelihood, prior, z)
    rec = -likelihood(z).log_prob(x)
    return Bound(kl + rec, kl, rec)


class SemiSupervisedBound(NamedTuple):
    """Per-example negative ELBO with the label marginalised: ``value = kl_z + kl_y + rec``."""
    value: tf.Tensor
    kl_z: tf.Tensor
    kl_y: tf.Tensor
    rec: tf.Tensor

    @property
    def kl(self):
        """Both KL terms, ``kl_z + kl_y``: what a KL warm-up or free bits weigh."""
        return self.kl_z + self.kl_y


def negative_elbo_marginal_label(x, label_posterior, posterior, likelihood, prior, label_prior,
                                 seed):
    """Negative ELBO of an unlabelled x under the M2 model (Kingma et al., 2014), the label summed
    out exactly under q(y | x) (all K labels in one batched pass):

        -ELBO(x) = KL(q(y|x) || p(y))
                   + sum_y q(y|x) [ KL(q(z|x,y) || p(z)) - log p(x | z_y, y) ],  z_y ~ q(z|x,y).

    Args:
      label_posterior: q(y | x), a Categorical with batch shape (B,) over K labels.
      posterior: callable ``y -> q(z | x, y)`` for one-hot labels y of shape (K, B, K) (label k
        in row k); returns batch shape (K, B).
      likelihood: callable ``(z, y) -> p(x | z, y)`` with the same (K, B) layout.
      label_prior: p(y), a Categorical over K labels.
    Returns:
      A per-example :class:`SemiSupervisedBound`. Gradients flow through q(y | x).
    """
    probs = label_posterior.probs_parameter()                  # (B, K)
    num_labels = tf.shape(probs)[-1]
    y = tf.one_hot(tf.range(num_labels), num_labels, dtype=probs.dtype)[:, None, :]
    y = tf.broadcast_to(y, [num_labels, tf.shape(probs)[0], num_labels])
    q_z = posterior(y)
    z = q_z.sample(seed=seed)                                  # (K, B, d)
    weights = tf.transpose(probs)                              # (K, B)
    rec = tf.reduce_sum(weights * -likelihood(z, y).log_prob(x), 0)
    kl_z = tf.reduce_sum(weights * tfd.kl_divergence(q_z, prior), 0)
    kl_y = tfd.kl_divergence(label_posterior, label_prior)
    return SemiSupervisedBound(kl_z + kl_y + rec, kl_z, kl_y, rec)


def _chunk_seed(seed, i):
    # Chunk 0 uses the caller's seed itself, so that IWAE-1 draws the same z as negative_elbo.
    return tf.where(tf.equal(i, 0), seed, tf.random.experimental.stateless_fold_in(seed, i))


def negative_iwae(x, posterior, likelihood, prior, num_samples, seed, max_rows=10_000):
    """Negative importance-weighted bound IWAE-m (Burda, Grosse & Salakhutdinov, 2016):

        -IWAE_m(x) = -log (1/m) sum_{i=1..m} p(x, z_i) / q(z_i | x),   z_i ~ q(z | x) iid,

    computed **per example**: the log-mean-exp runs over the m samples of the same x, never across
    examples (mixing them is the grouping bug of docs/reference.md section 11). ``-IWAE_1`` is the
    single-sample negative ELBO with Monte-Carlo KL; ``-IWAE_m`` does not increase with m in
    expectation and tends to ``-log p(x)``.

    Args:
      num_samples: m >= 1 (Python int or int tensor).
      max_rows: memory bound, see :func:`importance_weighted` (None: one chunk, for training).
    Returns:
      A per-example :class:`Bound`: ``value = -IWAE_m``; ``kl`` and ``rec`` are the means over the
      m samples of ``log q - log p(z)`` and ``-log p(x|z)`` (as the reference reports them).
    """
    x = tf.convert_to_tensor(x)

    def log_weights(n, chunk_seed):
        z = posterior.sample(n, seed=chunk_seed)
        return log_importance_weights(x, posterior, likelihood, prior, z)
    return importance_weighted(log_weights, num_samples, tf.shape(x)[0], seed, max_rows, x.dtype)


def importance_weighted(log_weights, num_samples, batch_size, seed, max_rows=10_000,
                        dtype=tf.float32):
    """-log (1/m) sum_i w_i per example, for m importance samples drawn in chunks.

    ``log_weights(n, seed)`` draws n samples for every example of the batch and returns a
    :class:`Bound` of ``-log w`` and its parts, each of shape (n, batch_size). Chunks hold at most
    ``max_rows`` (sample, example) rows and the log-sum-exp is accumulated across them, so memory
    does not grow with m. Chunk 0 uses ``seed`` itself, so m = 1 draws what a single-sample bound
    with the same seed draws.

    With ``max_rows=None`` all m samples are drawn at once, as chunk 0, without a loop: for
    training, where back-propagation keeps every chunk's activations anyway (chunks would save no
    memory), and XLA cannot compile the gradient of a loop. The values equal the chunked ones
    whenever m fits one chunk.

    Returns:
      A per-example :class:`Bound` (of ``dtype``) of ``-log mean_i w_i`` and the sample means of
      ``kl`` and ``rec``.
    """
    if max_rows is None:
        w = log_weights(num_samples, seed)
        m_float = tf.cast(num_samples, w.value.dtype)
        return Bound(tf.math.log(m_float) - tf.reduce_logsumexp(-w.value, 0),
                     tf.reduce_mean(w.kl, 0), tf.reduce_mean(w.rec, 0))
    m = tf.convert_to_tensor(num_samples, tf.int32)
    tf.debugging.assert_positive(m, message="the IWAE needs num_samples >= 1")
    per_chunk = tf.minimum(m, tf.maximum(1, max_rows // tf.maximum(batch_size, 1)))
    num_chunks = (m + per_chunk - 1) // per_chunk
    zeros = tf.zeros([batch_size], dtype)

    def body(i, log_sum, kl_sum, rec_sum):
        w = log_weights(per_chunk, _chunk_seed(seed, i))
        valid = (i * per_chunk + tf.range(per_chunk) < m)[:, None]
        log_w = tf.where(valid, -w.value, -math.inf)
        log_sum = tf.reduce_logsumexp(tf.stack([log_sum, tf.reduce_logsumexp(log_w, 0)]), 0)
        kl_sum += tf.reduce_sum(tf.where(valid, w.kl, 0.0), 0)
        rec_sum += tf.reduce_sum(tf.where(valid, w.rec, 0.0), 0)
        return i + 1, log_sum, kl_sum, rec_sum

    _, log_sum, kl_sum, rec_sum = tf.while_loop(
        lambda i, *_: i < num_chunks, body, (tf.constant(0), zeros - math.inf, zeros, zeros))
    m_float = tf.cast(m, log_sum.dtype)
    return Bound(tf.math.log(m_float) - log_sum, kl_sum / m_float, rec_sum / m_float)


def kl_warmup_weight(step, warmup_steps):
    """The KL term's weight at training step ``step`` (counted from 0) under a linear KL warm-up
    over ``warmup_steps`` steps (Bowman et al., 2016; Sønderby et al., 2016): ``step /
    warmup_steps`` until it reaches 1, then 1. The objective starts as the reconstruction term
    alone and becomes the negative ELBO at step ``warmup_steps``.
    """
    step = tf.cast(step, tf.float32)
    return tf.minimum(1.0, step / float(warmup_steps))
