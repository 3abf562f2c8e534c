"""Memory a request needs, checked before it is made.

A setting that cannot fit (a latent dimension of 10^8, 10^9 pictures) would otherwise end in an
allocation of tens of GiB and a crash, possibly after a whole training run. Every tool asks
:func:`require` first and gets one :class:`~tfp_vae.errors.ConfigError` naming the setting, the
estimate and the memory available. Imports nothing heavy.
"""

import itertools
import math

from tfp_vae.errors import ConfigError


def available():
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None where
    the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def require(nbytes, what, fix):
    """Raises ConfigError if ``nbytes`` exceed the memory available.

    Args:
      nbytes: the estimated need.
      what: the request, e.g. ``"--n=1000000000"``; the message reads "<what> needs about ...".
      fix: what to do instead, e.g. ``"draw fewer"``.
    """
    have = available()
    if have is not None and nbytes > have:
        raise ConfigError(f"{what} needs about {gib(nbytes)} of memory, more than the "
                          f"{gib(have)} available; {fix}.")


def gib(nbytes):
    """``nbytes`` as a short human size: '3.2 GiB', '1.5e+03 GiB'."""
    value = nbytes / 2**30
    return f"{value:.1f} GiB" if value < 1e4 else f"{value:.1e} GiB"


def parameter_count(model_class, sizes=("z_dim",), **kwargs):
    """The number of trainable parameters of ``model_class(**kwargs)``, without building it at
    that size.

    Every layer's size is affine in each of ``sizes`` (the latent's sizes and a prior's number
    of components, :meth:`tfp_vae.registry.Kind.sizes`) when the others are fixed, so the count
    is multilinear in them: models built with each size in {1, 2} (2^n tiny builds) fix it
    exactly, whatever the networks.
    """
    values = {name: int(kwargs.pop(name)) for name in sizes if name in kwargs}
    values.setdefault("z_dim", 10)
    total = 0
    for corner in itertools.product((1, 2), repeat=len(values)):
        # The multilinear interpolant's weight of this corner: (2 - v) at 1, (v - 1) at 2.
        weight = math.prod(2 - v if c == 1 else v - 1 for c, v in zip(corner, values.values()))
        total += weight * model_class(**dict(zip(values, corner)), **kwargs).count_params()
    return total


def activation_floats(kind, x_dim, num_classes=10, **kwargs):
    """Floats a training step of a ``kind`` (:class:`tfp_vae.registry.Kind`) holds per example,
    roughly: the latent draws, their distributions' parameters and log-densities with their
    gradients (16 per latent dimension), the likelihood's temporaries per pixel with their
    gradients (40 per pixel: measured, the VAE trained on -IWAE-300 peaked at 4.5 GB, about
    31,000 floats per image and sample), a mixture prior's (components, z) log-density terms with
    their gradients (6 each), all once per label for the semi-supervised bound, which enumerates
    the labels."""
    z_dim = kind.latent_width(kwargs)
    floats = 16 * z_dim + 40 * x_dim
    if kind.components:
        floats += 6 * int(kwargs[kind.components]) * z_dim
    if kind.task == "semisupervised":
        floats *= int(num_classes)
    return floats


def training_bytes(kind, batch_size, **kwargs):
    """An estimate of the memory one training step of the ``kind``'s model built with
    ``kwargs`` needs on one replica: the weights with their gradients and Adam's two moments
    (16 bytes a parameter), and ``batch_size`` examples' activations (4 bytes a float), each of
    the ``train_samples`` importance samples of the IWAE objective holding its own."""
    x_dim = math.prod(kwargs["image_shape"])
    samples = int(kwargs.get("train_samples", 1)) if kwargs.get("objective") == "iwae" else 1
    params = parameter_count(kind.model_class(), kind.sizes(), **kwargs)
    return 16 * params + 4 * batch_size * samples * activation_floats(kind, x_dim=x_dim, **kwargs)
