"""The VampPrior (Tomczak & Welling, 2018): a VAE whose prior is the mixture of its own
posteriors at learned pseudo-inputs."""

import keras
import tensorflow as tf

from tfp_vae import distributions
from tfp_vae.models import base, gmvae


@keras.saving.register_keras_serializable(package="tfp_vae")
class VampPrior(gmvae.GMVAE):
    """A VAE with the variational mixture of posteriors prior

        p(z) = (1/K) sum_k q(z | u_k),

    where q is the model's own encoder and the K pseudo-inputs u_k are images learned with the
    rest (:class:`~tfp_vae.distributions.PseudoInputs`). As the GMVAE's, the prior is a uniform
    mixture of diagonal Gaussians with no closed-form KL, so the negative ELBO uses the
    single-sample Monte-Carlo KL; IWAE bounds, pictures and export are the GMVAE's, with
    ``sample_components`` drawing from q(z | u_j) of the chosen pseudo-inputs, and one more
    signature, ``pseudo_inputs(components)``, giving the chosen pseudo-inputs u_j as images.

    Args:
      pseudo_inputs: K, the number of pseudo-inputs (500, like the GMVAE's k).
    """

    def __init__(self, z_dim=10, pseudo_inputs=500, **kwargs):
        pseudo_inputs = base.whole("pseudo_inputs", pseudo_inputs)
        if "k" in kwargs:  # the GMVAE's name of the count; here it is pseudo_inputs
            raise ValueError(f"the VampPrior counts its components as pseudo_inputs= (got "
                             f"k={kwargs['k']!r}); pass pseudo_inputs={kwargs['k']!r}.")
        kwargs.setdefault("name", "vampprior")
        super().__init__(z_dim=z_dim, k=pseudo_inputs, **kwargs)

    @property
    def pseudo_inputs(self):
        return self.k

    def make_prior(self):
        return distributions.PseudoInputs(self.k, self.x_dim, name="prior")

    def pseudo_input_pictures(self, count=100):
        """The first ``count`` pseudo-inputs u_k, (count, D) in [0, 1]."""
        return self.prior_layer.inputs()[:count]

    def prior_components(self):
        """q(z | u_k) for the K pseudo-inputs: batch shape (K,), event shape (z_dim,)."""
        return self.encode(self.prior_layer.inputs())

    def prior(self):
        """p(z) = (1/K) sum_k q(z | u_k), recomputed from the current encoder and pseudo-inputs
        at every call (so gradients reach both)."""
        return distributions.uniform_mixture(self.prior_components())

    def export_endpoints(self):
        endpoints = super().export_endpoints()

        def pseudo_inputs(components):
            return {"x": tf.gather(self.prior_layer.inputs(), components)}
        endpoints["pseudo_inputs"] = (pseudo_inputs, [
            tf.TensorSpec([None], tf.int32, name="components")])
        return endpoints

    def get_config(self):
        config = super().get_config()
        config["pseudo_inputs"] = config.pop("k")
        return config
