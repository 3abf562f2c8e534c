"""The beta-VAE (Higgins et al., 2017): the VAE trained with a weighted KL term."""

import keras

from tfp_vae.models import vae


@keras.saving.register_keras_serializable(package="tfp_vae")
class BetaVAE(vae.VAE):
    """Higgins et al. (2017): the VAE's networks and prior, trained on

        rec + beta * KL(q(z | x) || p(z)),

    which for beta > 1 presses the posterior towards the prior (more disentangled, blurrier) and
    for beta = 1 is the VAE. The loss is the training objective only: the reported ``nelbo`` and
    every evaluation are the true bound, rec + KL, so that beta-VAEs compare with other models.

    Args:
      beta: the KL term's weight (non-negative).
    """

    def __init__(self, z_dim=10, beta=4.0, **kwargs):
        if kwargs.get("objective", "elbo") != "elbo":
            raise ValueError("the BetaVAE trains on rec + beta * KL; objective='iwae' is for the "
                             "other unsupervised models.")
        if not float(beta) >= 0:
            raise ValueError(f"beta must be a non-negative number, got {beta}.")
        self.beta = float(beta)
        super().__init__(z_dim=z_dim, **kwargs)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}

    def describe(self):
        rows = super().describe()
        return rows[:-1] + [("objective", f"rec + {self.beta:g} x KL (analytic); the negative "
                                          f"ELBO reported")]

    def kl_weight(self):
        """``beta``, times the warm-up's weight when there is one."""
        warmup = super().kl_weight()
        return self.beta if warmup is None else self.beta * warmup
