"""Class labels as the conditional models (SSVAE, FSVAE) and their SavedModels take them: one
rule for every entry point, so that a script, the training step and a loaded export accept and
refuse the same labels.

Needs only TensorFlow (``tfp_vae.saved`` uses it without Keras).
"""

import tensorflow as tf


def checked(y, num_classes, batch=True):
    """``y`` as a conditional model's networks take it: int32 labels, or float32 one-hot rows
    (any dtype of width ``num_classes``; passed through as rows).

    ``batch``: ``y`` is one label per image of a batch, as a user passes it: integer labels of
    shape (B,) or (B, 1) (a column, as Keras' sparse labels; made (B,)), or one-hot rows (B,
    num_classes), each checked eagerly to hold one 1. Otherwise (the models' own enumerations
    of labels, e.g. (K, B) or (m, B)) any leading shape.

    Raises:
      ValueError: ``y`` is None, of another rank or width, or (eagerly) holds integer labels
        outside 0..num_classes-1. In a traced graph the range is not checked here (an
        exported graph maps such a label to a row of zeros); :func:`indices` can assert it.
    """
    if y is None:
        raise ValueError(f"the model is conditional on a label: pass y (integer labels of "
                         f"shape (batch,), or one-hot rows of {num_classes}).")
    y = tf.convert_to_tensor(y)
    rank, width = y.shape.rank, (y.shape[-1] if y.shape.rank else None)
    as_rows = not y.dtype.is_integer or (batch and rank == 2 and width == num_classes > 1)
    if as_rows:
        if rank is not None and (rank < 2 or width != num_classes or (batch and rank != 2)):
            raise ValueError(f"one-hot labels must be rows of {num_classes}"
                             f"{' (batch, ' + str(num_classes) + ')' if batch else ''}, got "
                             f"{y.dtype.name} of shape {tuple(y.shape)}.")
        y = tf.cast(y, tf.float32)
        if batch and rank is None:  # a step Keras retraced with the shape relaxed
            return tf.ensure_shape(tf.reshape(y, [-1, num_classes]), [None, num_classes])
        if batch and tf.executing_eagerly() and not bool(tf.reduce_all(
                (tf.reduce_sum(y, -1) == 1) & tf.reduce_all((y == 0) | (y == 1), -1))):
            raise ValueError(f"each row of one-hot labels must hold one 1 and {num_classes - 1} "
                             f"zeros (soft or empty rows are not labels): give each image its "
                             f"class.")
        return y
    if batch and rank is None:  # (B,) or (B, 1) in a step Keras retraced with the shape relaxed
        y = tf.ensure_shape(tf.reshape(y, [-1]), [None])
    elif batch and rank == 2 and width == 1:
        y = y[:, 0]
    elif batch and rank is not None and rank != 1:
        raise ValueError(f"labels must be integers of shape (batch,) or one-hot rows of "
                         f"{num_classes}, got {y.dtype.name} of shape {tuple(y.shape)}.")
    if tf.executing_eagerly() and tf.size(y) and not (
            tf.reduce_min(y) >= 0 and tf.reduce_max(y) < num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got min "
                         f"{int(tf.reduce_min(y))} and max {int(tf.reduce_max(y))}.")
    return tf.cast(y, tf.int32)


def indices(y, num_classes, assert_range=False):
    """Integer labels int32 (B,) of ``y`` (:func:`checked`; one-hot rows give their argmax).
    ``assert_range``: a traced graph also asserts that integer labels lie in the classes (the
    training steps; XLA compiles the assertion away)."""
    y = checked(y, num_classes)
    if y.dtype.is_floating:
        return tf.argmax(y, -1, output_type=tf.int32)
    if not assert_range or tf.executing_eagerly():
        return y
    check = tf.debugging.Assert(
        tf.reduce_all((y >= 0) & (y < num_classes)),
        [f"Labels must lie in 0..{num_classes - 1}; got min and max", tf.reduce_min(y),
         tf.reduce_max(y)])
    with tf.control_dependencies([check]):
        return tf.identity(y)
