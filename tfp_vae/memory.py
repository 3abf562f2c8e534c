"""Memory a request needs, checked before it is made.

A setting that cannot fit (a latent dimension of 10^8, 10^9 pictures) would otherwise end in an
allocation of tens of GiB and a crash, possibly after a whole training run. Every tool asks
:func:`require` first and gets one :class:`~tfp_vae.errors.ConfigError` naming the setting, the
estimate and the memory available. Imports nothing heavy.
"""

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
