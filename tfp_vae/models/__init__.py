"""The model zoo: one small subclass of :class:`BaseVAE` per kind of :mod:`tfp_vae.registry`.

Importing this package imports every registered kind's module (which registers its classes with
Keras, for ``keras.models.load_model``); each class is an attribute by its name
(``models.VAE``, ``models.GMVAE``, ...).
"""

from tfp_vae import registry
from tfp_vae.models.base import BaseVAE
from tfp_vae.models.conditional import ConditionalVAE

_CLASSES = {cls.__name__: cls for cls in (kind.model_class() for kind in registry.KINDS.values())}
globals().update(_CLASSES)
__all__ = ["BaseVAE", "ConditionalVAE", "get", *sorted(_CLASSES)]


def get(kind):
    """The model class of the registry's ``kind`` (e.g. ``'vae'``); ConfigError otherwise."""
    return registry.get(kind).model_class()
