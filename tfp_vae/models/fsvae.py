"""The FSVAE of CS236 HW2: a fully supervised conditional VAE of SVHN digits (or MNIST)."""

import keras
import tensorflow as tf

from tfp_vae.models import base, conditional

# The layout of one image of the reference's datasets.
IMAGE_SHAPES = {"svhn": (32, 32, 3), "mnist": (28, 28, 1)}


@keras.saving.register_keras_serializable(package="tfp_vae")
class FSVAE(conditional.ConditionalVAE):
    """A conditional VAE trained on the ELBO of log p(x | y) (Kingma et al., 2014; Sohn et al.,
    2015), docs/reference.md, sections 4 and 9:

        -ELBO(x | y) = KL(q(z | x, y) || N(0, I)) + E_q[-log N(x; mu(z, y), 0.1 I)],

    with the analytic KL and one reparameterised z. The decoder learns only the mean mu(z, y);
    the variance is fixed at 0.1 on every pixel, and the reconstruction term keeps the Gaussian
    constant (``5 * SSE - 713.8`` for 3072 pixels). Networks are the reference's v2 MLPs
    (x_dim + 10 -> 500 -> 500, ELU).

    Images are continuous in [0, 1] (no binarisation), flattened in (height, width, channel)
    order; the reference flattens SVHN channel-first, a fixed permutation of the pixels that a
    fully connected network with i.i.d. initial weights does not see.

    Training data: ``(images, labels)`` batches with integer labels (see
    :func:`tfp_vae.data.train_dataset` with ``binarized=False``).

    Args:
      image_shape: (height, width, channels) of one image: (32, 32, 3) for SVHN (the reference),
        (28, 28, 1) for MNIST.
      variance: the decoder's fixed variance (0.1 as the reference).
    """

    nn = "v2"

    def __init__(self, z_dim=10, image_shape=IMAGE_SHAPES["svhn"], likelihood="gaussian",
                 **kwargs):
        super().__init__(z_dim=z_dim, image_shape=image_shape, likelihood=likelihood, **kwargs)

    # ----------------------------------------------------------------------- distributions
    def call(self, inputs, training=False):
        """Deterministic reconstruction of ``(x, y)``: the decoder mean at z = E[q(z | x, y)]."""
        x, y = inputs
        return self.decode(self.encode(self.check_inputs(x), y).mean(), y).mean()

    # -------------------------------------------------------------------------------- training
    def unpack(self, data, seed=None):
        """``(images, labels)`` of a training batch, checked (:meth:`check_inputs`)."""
        x, y = base.unpack_x_y(data)
        if y is None:
            raise ValueError("The FSVAE trains on (images, labels) pairs: the labels condition "
                             "the encoder and decoder.")
        return (self.check_inputs(x, base.binarize_seed(seed)),
                self.label_indices(y, assert_range=True))

    def loss_and_terms(self, data, seed):
        """The batch mean of -ELBO(x | y) (:meth:`negative_elbo`) and its KL and Rec terms."""
        x, y = self.unpack(data, seed)
        bound = self.negative_elbo(x, y, seed=seed)
        return self.elbo_loss(bound), dict(zip(self.bound_names, bound))

    # ---------------------------------------------------------------------------------- export
    def export_endpoints(self):
        x = tf.TensorSpec([None, self.x_dim], tf.float32, name="x")
        y = tf.TensorSpec([None], tf.int32, name="y")
        seed = tf.TensorSpec([2], tf.int32, name="seed")
        endpoints = super().export_endpoints()
        endpoints.update(
            sample=(self.sample_labels, [y, seed]),
            negative_elbo=(lambda x, y, seed: dict(zip(self.bound_names,
                                                       self.negative_elbo(x, y, seed=seed))),
                           [x, y, seed]),
            negative_iwae=(lambda x, y, m, seed: dict(zip(("niwae", "kl", "rec"),
                                                          self.negative_iwae(x, m, y, seed=seed))),
                           [x, y, tf.TensorSpec([], tf.int32, name="m"), seed]))
        return endpoints
