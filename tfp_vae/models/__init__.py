"""The model zoo: one small subclass of :class:`BaseVAE` per objective, and a registry by name."""

from tfp_vae.models.base import OBJECTIVES, BaseVAE
from tfp_vae.models.conditional import ConditionalVAE
from tfp_vae.models.fsvae import FSVAE
from tfp_vae.models.gmvae import GMVAE
from tfp_vae.models.ssvae import SSVAE
from tfp_vae.models.vae import VAE
from tfp_vae.models.vampprior import VampPrior

MODELS = {cls.kind: cls for cls in (VAE, GMVAE, SSVAE, FSVAE, VampPrior)}


def get(kind):
    """The model class registered as ``kind`` (e.g. ``'vae'``)."""
    try:
        return MODELS[kind]
    except KeyError:
        raise ValueError(f"unknown model {kind!r}; choose one of: {', '.join(sorted(MODELS))}.") \
            from None
