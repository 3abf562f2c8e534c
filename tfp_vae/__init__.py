"""tfp_vae: the variational-autoencoder family of CS236 HW2 as Keras 3 models with TFP distributions.

Submodules are imported on use (``from tfp_vae import models``) so that light tools such as
``bin/sample`` pay only for what they need.
"""

__version__ = "0.1.0"
