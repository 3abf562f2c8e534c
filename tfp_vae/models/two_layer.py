"""The VAE with two stochastic layers of Burda, Grosse & Salakhutdinov (2016), section 5."""

import keras
import tensorflow as tf

from tfp_vae import distributions, networks
from tfp_vae.models import base

# The deterministic layers below each stochastic layer: two of 200 units between x and h1, two
# of 100 between h1 and h2, in both networks (Burda et al., 2016, section 5). Fixed widths, so
# that the parameter count stays affine in --z (tfp_vae.memory).
HIDDEN = ((200, 200), (100, 100))


def _style(arch):
    """The activation and gating of a dense ``arch`` (tfp_vae.networks.DENSE_ARCHS), without
    its widths: ``burda`` is tanh, ``mlp`` ELU, ``gated`` gated layers."""
    if arch not in networks.DENSE_ARCHS:
        raise ValueError(f"the two-layer VAE has dense networks: arch must be one of "
                         f"{', '.join(networks.DENSE_ARCHS)}, got {arch!r}.")
    return {k: v for k, v in networks.DENSE_ARCHS[arch].items() if k != "hidden"}


@keras.saving.register_keras_serializable(package="tfp_vae")
class ChainEncoder(keras.layers.Layer):
    """q(h1, h2 | x) = q(h1 | x) q(h2 | h1), each a diagonal Gaussian from an MLP, returned as
    one distribution over z = (h1, h2) concatenated (:func:`tfp_vae.distributions.chain`)."""

    def __init__(self, x_dim, h1_dim, h2_dim, arch="burda", **kwargs):
        super().__init__(**kwargs)
        self.sizes, style = (int(h1_dim), int(h2_dim)), _style(arch)
        self.q1 = networks.GaussianEncoder(x_dim, h1_dim, hidden=HIDDEN[0], name="q_h1", **style)
        self.q2 = networks.GaussianEncoder(h1_dim, h2_dim, hidden=HIDDEN[1], name="q_h2", **style)
        self.built = True

    def call(self, x):
        return distributions.chain(self.q1(x), self.q2, self.sizes)

    def means(self, x):
        """The two Gaussians along the posterior means: q(h1 | x) and q(h2 | h1 = E[h1 | x])."""
        q1 = self.q1(x)
        return q1, self.q2(q1.mean())


@keras.saving.register_keras_serializable(package="tfp_vae")
class ChainPrior(keras.layers.Layer):
    """p(h1, h2) = p(h2) p(h1 | h2): p(h2) = N(0, I), p(h1 | h2) a diagonal Gaussian from an
    MLP; its :meth:`distribution` is over z = (h1, h2), as the encoder's."""

    def __init__(self, h1_dim, h2_dim, arch="burda", **kwargs):
        super().__init__(**kwargs)
        self.sizes = (int(h1_dim), int(h2_dim))
        self.top = distributions.StandardNormalPrior(h2_dim, name="p_h2")
        self.p1 = networks.GaussianEncoder(h2_dim, h1_dim, hidden=HIDDEN[1][::-1], name="p_h1",
                                           **_style(arch))
        self.built = True

    def distribution(self):
        return distributions.chain(self.top.distribution(), lambda h2: self.given(h2),
                                   self.sizes, order=(1, 0))

    def given(self, h2):
        """p(h1 | h2) for h2 with any leading axes, none included: TFP traces the chain once
        with one unbatched draw of p(h2), which Keras' dense layers would refuse."""
        return self.p1(h2[None])[0] if h2.shape.rank == 1 else self.p1(h2)

    def describe(self):
        return (f"p(h1 | h2) p(h2): diagonal Gaussian over h1 ({self.sizes[0]}) from a network "
                f"of h2, N(0, I) over h2 ({self.sizes[1]})")


@keras.saving.register_keras_serializable(package="tfp_vae")
class TwoLayerVAE(base.BaseVAE):
    """Burda et al.'s (2016) second architecture, a VAE with two stochastic layers:

        p(x, h1, h2) = p(x | h1) p(h1 | h2) p(h2),   q(h1, h2 | x) = q(h1 | x) q(h2 | h1),

    p(h2) = N(0, I), the other conditionals diagonal Gaussians (Bernoulli or the fixed-variance
    Gaussian for x) from MLPs with two hidden layers of 200 units between x and h1 and of 100
    between h1 and h2, tanh with ``arch="burda"`` (the paper's), ELU with ``"mlp"``, gated with
    ``"gated"``. The bounds see one latent z = (h1, h2), ``z_dim + z2`` wide: the encoder and
    prior are TFP joint distributions over it, the KL is the Monte-Carlo one, and the IWAE,
    training on it (``objective="iwae"``) and every other method are the base model's. ``decode``
    reads h1, the first ``z_dim`` entries of z.

    Args:
      z_dim: the size of h1 (100 in the paper).
      z2: the size of h2 (50 in the paper).
    """

    analytic_kl = False

    def __init__(self, z_dim=100, z2=50, arch="burda", encoder=None, decoder=None, **kwargs):
        if encoder is not None or decoder is not None:
            raise ValueError("the two-layer VAE builds its own networks (a chain of two "
                             "stochastic layers); give encoder= and decoder= to the VAE.")
        self.h1_dim, self.h2_dim = base.whole("z_dim", z_dim), base.whole("z2", z2)
        _style(arch)
        kwargs.setdefault("name", "two_layer_vae")
        super().__init__(z_dim=self.h1_dim + self.h2_dim, arch=arch, **kwargs)

    def make_encoder(self):
        return ChainEncoder(self.x_dim, self.h1_dim, self.h2_dim, self.arch, name="encoder")

    def make_decoder(self):
        style = _style(self.arch)
        if self.likelihood == "bernoulli":
            return networks.BernoulliDecoder(self.h1_dim, self.x_dim, hidden=HIDDEN[0][::-1],
                                             name="decoder", **style)
        return networks.GaussianDecoder(self.h1_dim, self.x_dim, hidden=HIDDEN[0][::-1],
                                        variance=self.variance, name="decoder", **style)

    def make_prior(self):
        return ChainPrior(self.h1_dim, self.h2_dim, self.arch, name="prior")

    def encode(self, x, y=None):
        """q(h1, h2 | x) over z = (h1, h2): it samples and gives ``log_prob`` (a TFP joint
        distribution); its mean has no closed form (:meth:`embed` gives the Gaussians' means
        along the chain, :meth:`encoded_moments`)."""
        return self.encoder(x)

    def decode(self, z, y=None):
        """p(x | h1), h1 the first ``z_dim`` entries of z = (h1, h2)."""
        return self.decoder(z[..., :self.h1_dim])

    def encoded_moments(self, x, y=None):
        """The means and variances of q(h1 | x) and q(h2 | h1 = E[h1 | x]), each concatenated
        over (h1, h2): the posterior's Gaussians along its means (E[h2 | x] itself has no
        closed form); :meth:`embed`, ``call`` and the ``encode`` signature give them."""
        q1, q2 = self.encoder.means(x)
        return (tf.concat([q1.mean(), q2.mean()], -1),
                tf.concat([q1.variance(), q2.variance()], -1))

    def prior_transform(self, eps, u=None):
        """z = (h1, h2) of the prior from N(0, I) noise ``eps`` (n, z_dim + z2): h2 = its last
        ``z2`` columns, h1 = mean + stddev * the first ``z_dim`` of p(h1 | h2)."""
        eps = tf.convert_to_tensor(eps, self.compute_dtype)
        h2 = eps[:, self.h1_dim:]
        p1 = self.prior_layer.given(h2)
        return tf.concat([p1.mean() + p1.stddev() * eps[:, :self.h1_dim], h2], -1)

    def describe(self):
        rows = super().describe()
        rows[0] = ("q(h1, h2 | x)", f"q(h1 | x) q(h2 | h1), diagonal Gaussians over h1 "
                                    f"({self.h1_dim}) and h2 ({self.h2_dim}), {self.arch} MLPs")
        rows[1] = ("p(x | h1)", rows[1][1])
        rows[2] = ("p(h1, h2)", self.prior_layer.describe())
        return rows

    def get_config(self):
        return {**super().get_config(), "z_dim": self.h1_dim, "z2": self.h2_dim}
