"""Keras layers whose outputs are ``tfp.distributions``.

Why not ``tfp.layers``: they are built on the legacy ``tf_keras`` and cannot be saved with Keras 3.
These layers are the small part we need: each ``call`` turns a tensor of parameters into a
distribution, built anew on every call so that gradients reach the parameters. All have event
rank 1 (``tfd.Independent``), so ``log_prob`` sums over the last axis as the reference does.

Priors have no input, and a Keras 3 layer cannot be called without one, so prior layers hold
their variables and return their distribution from :meth:`distribution`.
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions
tfb = tfp.bijectors

# The reference's variance floor: v = softplus(raw) + 1e-8 (``gaussian_parameters``).
VARIANCE_FLOOR = 1e-8


def gaussian_parameters(h, axis=-1):
    """Splits h in two halves along ``axis``: mean = first, variance = softplus(second) + 1e-8."""
    mean, raw = tf.split(h, 2, axis=axis)
    return mean, tf.nn.softplus(raw) + VARIANCE_FLOOR


class _Weightless(keras.layers.Layer):
    """A layer without variables: built from the start."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True


class PhiloxNormal(tfd.Normal):
    """``tfd.Normal`` whose draws name TensorFlow's Philox generator explicitly.

    Without XLA the draws are bit-identical to ``tfd.Normal``'s (TensorFlow's automatically
    selected generator on CPU is Philox). Under XLA (``jit_compile``) the automatic choice, which
    TFP cannot override, compiles on CPU to a generator about 20 times slower than Philox (5.5
    against 0.3 ms for 76,000 uniform draws, measured), which dominated the SSVAE's XLA step (ten
    draws per image); compiled Philox is fast. XLA's Philox stream differs from the kernel's, so
    a step draws other numbers with XLA than without, as every XLA draw does (each is still a
    fixed function of the seed).
    """

    def _sample_n(self, n, seed=None):
        loc, scale = tf.convert_to_tensor(self.loc), tf.convert_to_tensor(self.scale)
        shape = tf.concat([[n], self._batch_shape_tensor(loc=loc, scale=scale)], 0)
        eps = tf.random.stateless_normal(shape, seed=tfp.random.sanitize_seed(seed),
                                         dtype=self.dtype, alg="philox")
        return eps * scale + loc


class SoftplusBernoulli(tfd.Bernoulli):
    """``tfd.Bernoulli`` (given logits) whose log-density is ``x * logits - softplus(logits)``.

    The same function as TFP's, written with one softplus: TFP computes both outcomes'
    log-probabilities (two softplus) and mixes them with two ``multiply_no_nan``, about seven
    passes over the (samples, images, pixels) tensor where this takes three. Without XLA, which
    fuses either form, those passes were most of the IWAE's time beyond its matrix products
    (``benchmarks/bernoulli.py``). The two agree to float32 rounding (``tests/test_models.py``).
    """

    def _log_prob(self, event):
        if self._logits is None:  # given probs: TFP's own
            return super()._log_prob(event)
        logits = tf.convert_to_tensor(self._logits)
        return tf.cast(event, logits.dtype) * logits - tf.nn.softplus(logits)


@keras.saving.register_keras_serializable(package="tfp_vae")
class DiagonalGaussian(_Weightless):
    """h (..., 2d) -> N(mean, diag(variance)) with (mean, variance) = :func:`gaussian_parameters`.

    The network outputs a *variance* (as the reference); TFP's ``Normal`` takes the standard
    deviation, so the scale is sqrt(variance).
    """

    def call(self, h):
        """The Gaussian of ``h``: batch shape ``h.shape[:-1]``, event shape (d,)."""
        mean, variance = gaussian_parameters(h)
        return tfd.Independent(PhiloxNormal(mean, tf.sqrt(variance)),
                               reinterpreted_batch_ndims=1)


@keras.saving.register_keras_serializable(package="tfp_vae")
class BernoulliLogits(_Weightless):
    """logits (..., D) -> prod_d Bernoulli(x_d | sigmoid(logits_d)), float32 samples.

    ``log_prob(x) = sum_d [x_d * logits_d - softplus(logits_d)]``, the reference's
    ``-BCEWithLogits`` summed over pixels.
    """

    def call(self, logits):
        """Independent Bernoullis: batch shape ``logits.shape[:-1]``, event shape (D,)."""
        return tfd.Independent(SoftplusBernoulli(logits=logits, dtype=logits.dtype),
                               reinterpreted_batch_ndims=1)


@keras.saving.register_keras_serializable(package="tfp_vae")
class FixedVarianceGaussian(_Weightless):
    """mean (..., D) -> N(mean, variance * I) with a fixed ``variance`` (the FSVAE decoder; 0.1).

    ``-log_prob(x) = sum_d (x_d - mean_d)^2 / (2 variance) + D/2 log(2 pi variance)``: the
    reference's reconstruction term keeps the constant (5 * SSE - 713.8 for D = 3072).
    """

    def __init__(self, variance=0.1, **kwargs):
        super().__init__(**kwargs)
        if not float(variance) > 0:
            raise ValueError(f"variance must be positive, got {variance}.")
        self.variance = float(variance)

    def call(self, mean):
        """N(mean, variance * I): batch shape ``mean.shape[:-1]``, event shape (D,)."""
        scale = tf.constant(self.variance ** 0.5, mean.dtype)
        return tfd.Independent(tfd.Normal(mean, scale), reinterpreted_batch_ndims=1)

    def get_config(self):
        return {**super().get_config(), "variance": self.variance}


@keras.saving.register_keras_serializable(package="tfp_vae")
class CategoricalLogits(_Weightless):
    """logits (..., K) -> Categorical(softmax(logits)) over the K classes (integer samples)."""

    def call(self, logits):
        """A Categorical with batch shape ``logits.shape[:-1]``."""
        return tfd.Categorical(logits=logits)


@keras.saving.register_keras_serializable(package="tfp_vae")
class StandardNormalPrior(_Weightless):
    """p(z) = N(0, I) in ``dim`` dimensions (fixed; no trainable variables)."""

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)

    def distribution(self):
        """The prior as a ``tfd`` distribution with event shape (dim,)."""
        return tfd.Independent(tfd.Normal(tf.zeros([self.dim]), 1.0), reinterpreted_batch_ndims=1)

    def describe(self):
        return f"standard normal N(0, I) over z ({self.dim}), fixed"

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


@keras.saving.register_keras_serializable(package="tfp_vae")
class MixturePrior(keras.layers.Layer):
    """A learned uniform mixture of k diagonal Gaussians in ``dim`` dimensions (the GMVAE prior):

        p(z) = (1/k) sum_j N(z; mu_j, diag(v_j)),

    parameterised as the reference: one trainable (2k, dim) variable whose first k rows are the
    means and whose last k rows give the variances ``softplus(.) + 1e-8``, initialised
    ``randn / sqrt(k * dim)``; the weights are uniform and fixed. ``MixtureSameFamily`` evaluates
    log p(z) with a log-sum-exp over components, so it does not underflow for z far from every
    component.
    """

    def __init__(self, dim, k, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.k = int(dim), int(k)
        self.z_pre = self.add_weight(
            shape=(2 * self.k, self.dim), name="z_pre",
            initializer=keras.initializers.RandomNormal(stddev=1.0 / (self.k * self.dim) ** 0.5))
        self.built = True

    def components(self):
        """The k components as a distribution with batch shape (k,) and event shape (dim,)."""
        mean, variance = gaussian_parameters(self.z_pre, axis=0)
        return tfd.Independent(PhiloxNormal(mean, tf.sqrt(variance)),
                               reinterpreted_batch_ndims=1)

    def distribution(self):
        """The mixture as a ``tfd.MixtureSameFamily`` with event shape (dim,) (whose ``log_prob``
        is computed by matrix products, see :class:`_DiagonalGaussianMixture`)."""
        components = self.components()
        return _DiagonalGaussianMixture(
            tfd.Categorical(logits=tf.zeros([self.k], components.dtype)), components)

    def describe(self):
        return f"uniform mixture of {self.k} learned diagonal Gaussians over z ({self.dim})"

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "k": self.k}


def uniform_mixture(components):
    """The uniform mixture of diagonal Gaussians ``components`` (a ``tfd.Independent`` of
    ``tfd.Normal`` with batch shape (k,) and event shape (dim,)), with the matrix-product
    log-density of :class:`_DiagonalGaussianMixture`."""
    k = components.batch_shape[0]
    return _DiagonalGaussianMixture(tfd.Categorical(logits=tf.zeros([k], components.dtype)),
                                    components)


@keras.saving.register_keras_serializable(package="tfp_vae")
class PseudoInputs(keras.layers.Layer):
    """The K learned pseudo-inputs u_k of the VampPrior (Tomczak & Welling, 2018), images in
    [0, 1]^D: as the paper's implementation, a (K, D) weight passed through a hard tanh clipped
    to [0, 1], initialised N(0.05, 0.01) (so that every pseudo-input starts as a faint grey
    image, inside the clip, where gradients reach it).
    """

    def __init__(self, k, x_dim, **kwargs):
        super().__init__(**kwargs)
        self.k, self.x_dim = int(k), int(x_dim)
        self.raw = self.add_weight(shape=(self.k, self.x_dim), name="pseudo_inputs",
                                   initializer=keras.initializers.RandomNormal(0.05, 0.01))
        self.built = True

    def inputs(self):
        """The pseudo-inputs, (K, D) in [0, 1]."""
        return tf.clip_by_value(self.raw, 0.0, 1.0)

    def describe(self):
        return (f"VampPrior: uniform mixture of q(z | u_k) over {self.k} learned pseudo-inputs "
                f"u_k")

    def get_config(self):
        return {**super().get_config(), "k": self.k, "x_dim": self.x_dim}


def chain(first, then, sizes, order=(0, 1)):
    """The joint distribution of a two-link chain, a then b | a, as one flat vector.

    ``first`` is the distribution of a; ``then(a)`` that of b given a (``a`` may carry leading
    sample axes). The result is TFP's ``JointDistributionSequential([first, then])`` mapped by
    a concatenation (``tfb.Split`` inverted) to one event of ``sum(sizes)`` entries, the parts in
    the order ``order`` names them (``(1, 0)``: b first, then a), so that the models' bounds
    (:mod:`tfp_vae.bounds`), which see one latent vector z, need no change: ``sample`` draws a
    then b | a (reparameterised), and ``log_prob(z)`` is ``log first(a) + log then(a)(b)``.
    ``sizes`` are the parts' widths in the output order. Its mean and variance have no closed
    form (b's depend on a through a network): they raise an error that says so.
    """
    joint = tfd.JointDistributionSequential([first, then])
    bijector = tfb.Invert(tfb.Split(list(sizes)))
    if tuple(order) != (0, 1):
        bijector = tfb.Chain([bijector, tfb.Restructure(list(order))])
    return _Chain(joint, bijector)


class _Chain(tfd.TransformedDistribution):
    """:func:`chain`'s distribution, whose moments explain why they are missing (TFP's own error
    speaks of independence and bijectors)."""

    def _no_moment(self, name):
        raise NotImplementedError(
            f"the {name} of a chain of two stochastic layers has no closed form; draw samples, "
            f"or use the model's embed(x) (the posterior's Gaussians along their means).")

    def _mean(self, **kwargs):
        self._no_moment("mean")

    def _variance(self, **kwargs):
        self._no_moment("variance")

    def _stddev(self, **kwargs):
        self._no_moment("standard deviation")


class _DiagonalGaussianMixture(tfd.MixtureSameFamily):
    """``MixtureSameFamily`` of diagonal Gaussians whose ``log_prob`` uses two matrix products.

    Expanding the square, the log-density of component j at z is

        log N(z; mu_j, diag(v_j)) = -1/2 [ z^2 . (1/v_j) - 2 z . (mu_j / v_j)
                                           + sum_d (mu_jd^2 / v_jd + log(2 pi v_jd)) ],

    so all k components cost two (rows, dim) x (dim, k) products instead of a (rows, k, dim)
    elementwise tensor: the GMVAE's IWAE-1000 spends most of its time here otherwise. Written by
    hand because TFP evaluates every component separately. In float32 the expansion is accurate to
    about 1e-7 of the largest term, which ``tests/test_gmvae.py`` checks against float64 NumPy,
    near the components and 1000 units away.
    """

    def _log_prob(self, x):
        normal = self.components_distribution.distribution  # Normal(loc (k, d), scale (k, d))
        mean, variance = normal.loc, tf.square(normal.scale)
        precision = 1.0 / variance
        const = tf.reduce_sum(tf.square(mean) * precision + tf.math.log(2 * math.pi * variance), -1)
        quadratic = (tf.einsum("...d,kd->...k", tf.square(x), precision)
                     - 2.0 * tf.einsum("...d,kd->...k", x, mean * precision) + const)
        log_weights = tf.nn.log_softmax(self.mixture_distribution.logits)
        return tf.reduce_logsumexp(log_weights - 0.5 * quadratic, axis=-1)
