"""``ConditionalVAE``: the shared part of the label-conditioned models (SSVAE, FSVAE).

Both have an encoder q(z | x, y) and a decoder p(x | z, y) that take the label as a one-hot
vector concatenated to their input (docs/reference.md, section 1), and draw class-conditional
digits.
"""

import keras
import tensorflow as tf

from tfp_vae import images, labels
from tfp_vae.models import base


@keras.saving.register_keras_serializable(package="tfp_vae")
class ConditionalVAE(base.BaseVAE):
    """A :class:`~tfp_vae.models.base.BaseVAE` whose encoder and decoder are conditioned on a
    label y in 0..num_classes-1.

    Labels may be given as integers (shape (B,) or (B, 1)) or one-hot rows (shape (B,
    num_classes)); :mod:`tfp_vae.labels` checks them.

    Args:
      num_classes: the number of classes (10 for MNIST and SVHN).
    """

    conditional = True

    def __init__(self, *args, num_classes=10, **kwargs):
        if kwargs.get("objective", "elbo") != "elbo":
            raise ValueError(f"the {type(self).__name__} trains on its ELBO only; "
                             f"objective='iwae' is for the unsupervised models.")
        self.num_classes = base.whole("num_classes", num_classes)
        super().__init__(*args, **kwargs)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}

    @property
    def y_dim(self):
        return self.num_classes

    def one_hot(self, y):
        """Integer labels -> one-hot float rows (a label outside the classes: a row of zeros, in
        TensorFlow and in ONNX alike); one-hot input is passed through."""
        y = tf.convert_to_tensor(y)
        if y.dtype.is_integer:
            classes = tf.range(self.num_classes, dtype=tf.int32)
            return tf.cast(tf.equal(tf.cast(y, tf.int32)[..., None], classes), tf.float32)
        return y

    def encode(self, x, y=None):
        """q(z | x, y): a diagonal Gaussian with batch shape (B,)."""
        return self.encoder(x, self.one_hot(self._labels(y)))

    def decode(self, z, y=None):
        """p(x | z, y), batch shape (B,)."""
        return self.decoder(z, self.one_hot(self._labels(y)))

    def _labels(self, y):
        """``y`` checked in any layout of the models' own enumerations
        (:func:`tfp_vae.labels.checked` with ``batch=False``): in a script (eagerly), labels
        outside the classes are refused here (:meth:`one_hot` makes a row of zeros of them, as
        the exported graph must)."""
        return labels.checked(y, self.num_classes, batch=False)

    def batch_labels(self, y, batch=None):
        """The labels a public method was given, one per image of ``batch`` (its images or
        noise; :func:`tfp_vae.labels.checked`: (B,), (B, 1) or one-hot rows (B, num_classes),
        as many as ``batch`` has rows, checked eagerly); None stays None (the SSVAE's unlabelled
        bounds; the others refuse it when they encode)."""
        if y is None:
            return None
        y = labels.checked(y, self.num_classes)
        if batch is not None and tf.executing_eagerly():
            rows = tf.shape(batch)[0] if tf.is_tensor(batch) else len(batch)
            if y.shape[0] != int(rows):
                raise ValueError(f"{y.shape[0]} labels for {int(rows)} images: give one label "
                                 f"per image.")
        return y

    def label_indices(self, y, assert_range=False):
        """Integer labels int32 (B,) from integer labels (B,) or (B, 1), or one-hot rows
        (:func:`tfp_vae.labels.indices`); ``assert_range``: a traced graph (the training and
        evaluation steps) also asserts that they lie in 0..num_classes-1."""
        return labels.indices(y, self.num_classes, assert_range=assert_range)

    def sample(self, n, y=None, seed=None):
        """n draws z ~ p(z), x ~ p(x | z, y) (:meth:`observe`): ``y`` one class for all, n labels,
        or None for classes drawn uniformly (from the seed, or fresh)."""
        n = base.count("n", n)
        seed = self.fresh_seed(seed)
        if y is None:
            y = tf.random.stateless_uniform([n], tf.random.experimental.stateless_fold_in(seed, 1),
                                            0, self.num_classes, tf.int32)
        else:
            y = tf.convert_to_tensor(y)
            y = self.label_indices(tf.reshape(y, [1]) if y.shape.rank == 0 else y)
            if tf.executing_eagerly() and len(y) not in (1, n):
                raise ValueError(f"y must be one class for all draws or {n} labels, got "
                                 f"{len(y)}.")
            y = tf.broadcast_to(y, [n])
        return self.sample_labels(y, seed)

    def sample_labels(self, y, seed=None):
        """One draw per label of ``y``: z ~ p(z), x ~ p(x | z, y); see :meth:`observe`."""
        z_seed, x_seed = self.two_seeds(seed)
        y = self.label_indices(y)
        z = self.prior().sample(tf.shape(y)[0], seed=z_seed)
        return self.observe(self.decode(z, y), x_seed)

    def class_grid(self, columns, seed=None):
        """The reference's class-conditional picture: ``columns`` latents z_j ~ p(z) drawn once;
        row i, column j is drawn from p(x | z_j, y = i) (row-major, num_classes * columns rows),
        so a column shows one style in every class."""
        columns = base.count("columns", columns)
        z_seed, x_seed = self.two_seeds(seed)
        z = self.prior().sample(columns, seed=z_seed)
        z = tf.tile(z, [self.num_classes, 1])
        y = tf.repeat(tf.range(self.num_classes), columns)
        return self.observe(self.decode(z, y), x_seed)

    def sample_grid(self, seed):
        """The reference's picture of a conditional model: :meth:`class_grid` with 20 columns
        (row = class, column = one shared z) of at most 20 classes
        (:func:`tfp_vae.images.shown_classes`), as (images, rows, cols=20); Gaussian models
        picture clip(mean, 0, 1), Bernoulli ones binary draws (``picture_keys[0]``)."""
        grid = self.class_grid(20, seed)[self.picture_keys[0]]
        return images.class_rows(grid, self.num_classes, 20)

    def export_endpoints(self):
        x = tf.TensorSpec([None, self.x_dim], tf.float32, name="x")
        labels = tf.TensorSpec([None], tf.int32, name="y")

        def encode(x, y):
            return dict(zip(("mean", "variance"), self.encoded_moments(x, y)))

        endpoints = super().export_endpoints()
        eps = tf.TensorSpec([None, self.z_dim], tf.float32, name="eps")
        endpoints.update(
            generate=(lambda eps, y: {"x": self.generate(eps, y=y)}, [eps, labels]),
            encode=(encode, [x, labels]),
            decode=(lambda z, y: self.decoded(self.decode(z, y)),
                    [tf.TensorSpec([None, self.z_dim], tf.float32, name="z"), labels]),
            class_grid=(self.class_grid, [tf.TensorSpec([], tf.int32, name="columns"),
                                          tf.TensorSpec([2], tf.int32, name="seed")]))
        return endpoints
