"""The GMVAE of CS236 HW2: the VAE with a learned mixture-of-Gaussians prior."""

import keras
import tensorflow as tf

from tfp_vae import distributions
from tfp_vae.models import base


@keras.saving.register_keras_serializable(package="tfp_vae")
class GMVAE(base.BaseVAE):
    """A VAE whose prior is a learned uniform mixture of k diagonal Gaussians
    (:class:`~tfp_vae.distributions.MixturePrior`), trained jointly by the same optimiser.

    The KL term has no closed form, so the negative ELBO uses the single-sample Monte-Carlo KL
    ``log q(z|x) - log p(z)`` at the same z as the reconstruction (docs/reference.md, section 4).

    Args:
      k: number of mixture components (500 as the reference).
      iwae_max_rows: defaults so that the (rows, k, z_dim) tensor of the mixture's log-density
        stays near 40 MB (and the pixels within the base model's bound); the IWAE-1000 of 100
        images then runs well within 1 GB.
    """

    analytic_kl = False

    def __init__(self, z_dim=10, k=500, iwae_max_rows=None, **kwargs):
        self.k = base.whole("k", k)
        super().__init__(z_dim=z_dim, iwae_max_rows=iwae_max_rows, **kwargs)

    def default_iwae_max_rows(self):
        return min(super().default_iwae_max_rows(), max(100, 10_000_000 // (self.k * self.z_dim)))

    def prior_transform(self, eps, u=None):
        """z = mu_k + sqrt(v_k) eps with the component k = floor(u K) (see
        :meth:`~tfp_vae.models.base.BaseVAE.prior_transform`)."""
        if u is None:
            raise ValueError(f"the {type(self).__name__}'s prior is a mixture of {self.k}: pass u, "
                             f"uniforms in [0, 1) of shape (n,) that choose each draw's "
                             f"component.")
        components = self.prior_components().distribution  # Normal, (k, z_dim)
        k = tf.minimum(tf.cast(tf.convert_to_tensor(u) * self.k, tf.int32), self.k - 1)
        return tf.gather(components.loc, k) + tf.gather(components.scale, k) * eps

    def prior_components(self):
        """The k components of the prior: a distribution with batch shape (k,) and event shape
        (z_dim,)."""
        return self.prior_layer.components()

    def make_prior(self):
        """The learned mixture of ``k`` Gaussians (:class:`~tfp_vae.distributions.MixturePrior`)."""
        return distributions.MixturePrior(self.z_dim, self.k, name="prior")

    def get_config(self):
        return {**super().get_config(), "k": self.k}

    def sample_components(self, components, n, seed=None):
        """n digits from each listed prior component j: z ~ N(mu_j, diag(v_j)), x ~ p(x | z).

        Returns ``{"x", "probs"}`` of shape (len(components) * n, x_dim), component by component.
        """
        n = base.count("n", n)
        components = tf.reshape(tf.convert_to_tensor(components), [-1])  # one or a list
        if not components.dtype.is_integer:
            raise ValueError(f"components must be whole numbers in 0..{self.k - 1}, got "
                             f"{components.dtype.name}.")
        if tf.executing_eagerly() and tf.size(components) and not (
                tf.reduce_min(components) >= 0 and tf.reduce_max(components) < self.k):
            raise ValueError(f"components must lie in 0..{self.k - 1}, got "
                             f"{components.numpy().tolist()}.")
        z_seed, x_seed = self.two_seeds(seed)
        z = tf.gather(self.prior_components().sample(n, seed=z_seed), components, axis=1)
        p_x = self.decode(tf.reshape(tf.transpose(z, [1, 0, 2]), [-1, self.z_dim]))
        return {"x": p_x.sample(seed=x_seed), "probs": p_x.mean()}

    def export_endpoints(self):
        endpoints = super().export_endpoints()
        endpoints["sample_components"] = (self.sample_components, [
            tf.TensorSpec([None], tf.int32, name="components"),
            tf.TensorSpec([], tf.int32, name="n"), tf.TensorSpec([2], tf.int32, name="seed")])
        return endpoints
