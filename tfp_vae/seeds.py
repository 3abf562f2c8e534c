"""Stateless seeds from what a user passes: the one rule for the Keras models and a loaded
SavedModel (:mod:`tfp_vae.saved`). Needs only TensorFlow and NumPy."""

import numpy as np
import tensorflow as tf

INT32_MAX = 2 ** 31 - 1


def as_seed(seed):
    """A stateless seed (int32 tensor of shape [2]) from an int, a pair, or a tensor. Python
    and NumPy numbers must be whole and fit in an int32 (a ValueError, not a silent wrap or
    truncation: 2**32 would be 0, 1.5 would be 1)."""
    if not any(tf.is_tensor(part) for part in tf.nest.flatten(seed)):  # traced: as they come
        values = np.asarray(seed)
        if values.shape not in ((), (2,)) or values.dtype.kind not in "iuf" or \
                not np.all(np.isfinite(values)) or not np.all(values == np.round(values)) or \
                not np.all((values >= -2 ** 31) & (values <= INT32_MAX)):
            raise ValueError(f"a seed is a whole number or a pair of them in -2**31..2**31-1, "
                             f"got {seed!r}.")
    seed = tf.convert_to_tensor(seed)
    if seed.dtype != tf.int32:
        seed = tf.cast(seed, tf.int32)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.constant(0, tf.int32)])
    return seed
