"""tfp_vae: the variational-autoencoder family as Keras 3 models with TFP distributions.

Submodules load on first use (PEP 562), so that ``import tfp_vae`` does not import TensorFlow
and the tools can check their flags first; ``tfp_vae.models.VAE`` and ``from tfp_vae import
models`` both work.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("bounds", "callbacks", "cards", "checkpoints", "cli", "compat", "data", "distribute",
               "distributions", "errors", "evaluate", "evaluate_saved", "export", "files", "images",
               "labels", "memory", "models", "networks", "pictures", "pretrained", "recipes",
               "registry", "rundir", "saved", "schedules", "seeds", "settings", "sources", "tasks",
               "train")


def __getattr__(name):
    # PEP 562: import a submodule when it is first used as an attribute.
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
