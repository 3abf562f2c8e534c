"""The VAE of CS236 HW2: N(0, I) prior, diagonal-Gaussian encoder, Bernoulli decoder (v1 MLPs)."""

import keras

from tfp_vae.models import base


@keras.saving.register_keras_serializable(package="tfp_vae")
class VAE(base.BaseVAE):
    """Kingma & Welling (2014): p(z) = N(0, I), q(z|x) = N(mu(x), diag(v(x))), p(x|z) Bernoulli.

    Trained on the single-sample negative ELBO with the analytic KL (docs/reference.md, section
    4); everything is inherited from :class:`~tfp_vae.models.base.BaseVAE`.
    """
