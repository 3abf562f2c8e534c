"""The reference's networks (REFERENCE.md section 1) as Keras layers returning distributions.

v1 (MNIST): 784(+y) -> 300 -> 300 -> out, ELU; v2 (SVHN): 3072(+y) -> 500 -> 500 -> out, ELU.
Weights and biases use PyTorch's ``nn.Linear`` default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
so that training matches the reference (Keras' glorot-uniform kernels and zero biases train
measurably differently in the first thousand steps).
"""

import math

import keras
import tensorflow as tf

from tfp_vae import distributions

HIDDEN = {"v1": (300, 300), "v2": (500, 500)}


def torch_linear(units, fan_in, activation=None, name=None):
    """A Dense layer initialised like PyTorch's ``nn.Linear``: kernel and bias U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.layers.Dense(
        units, activation=activation, name=name,
        kernel_initializer=keras.initializers.RandomUniform(-bound, bound),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound))


class MLP(keras.layers.Layer):
    """input_dim -> hidden... -> output_dim; ``activation`` after every layer but the last.

    A Layer rather than ``keras.Sequential`` because the IWAE feeds it (samples, batch, dim)
    tensors, which a Sequential built for (batch, dim) rejects.
    """

    def __init__(self, input_dim, hidden, output_dim, activation="elu", **kwargs):
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        sizes = [self.input_dim, *hidden, output_dim]
        self.dense = [torch_linear(units, fan_in, activation if i < len(hidden) else None,
                                   name=f"dense_{i}")
                      for i, (fan_in, units) in enumerate(zip(sizes[:-1], sizes[1:]))]

    def build(self, input_shape=None):
        fan_in = self.input_dim
        for layer in self.dense:
            layer.build((None, fan_in))
            fan_in = layer.units

    def call(self, h):
        for layer in self.dense:
            h = layer(h)
        return h


class _Conditional(keras.layers.Layer):
    """Shared plumbing: concatenates ``[inputs, y]`` (inputs first, as the reference), runs the
    MLP and hands the result to a distribution head."""

    def __init__(self, input_dim, output_dim, head, y_dim=0, nn="v1", activation="elu", **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.y_dim = int(input_dim), int(y_dim)
        self.net = MLP(self.input_dim + self.y_dim, HIDDEN[nn], output_dim, activation, name="mlp")
        self.head = head
        self.build()  # The input size is known: create the variables now.

    def build(self, input_shape=None):
        self.net.build()
        self.built = True

    def call(self, inputs, y=None):
        if self.y_dim and y is None:
            raise ValueError(f"{self.name} is conditional on a label: pass y (one-hot, "
                             f"{self.y_dim} columns).")
        if y is not None:
            # Broadcast the leading (sample, batch) axes, e.g. x (B, D) against labels (K, B, K).
            y = tf.cast(y, inputs.dtype)
            lead = tf.broadcast_dynamic_shape(tf.shape(inputs)[:-1], tf.shape(y)[:-1])
            inputs = tf.concat([tf.broadcast_to(inputs, tf.concat([lead, tf.shape(inputs)[-1:]], 0)),
                                tf.broadcast_to(y, tf.concat([lead, tf.shape(y)[-1:]], 0))], -1)
        return self.head(self.net(inputs))


class GaussianEncoder(_Conditional):
    """q(z | x[, y]) = N(mean, diag(variance)) from an MLP with 2*z_dim outputs."""

    def __init__(self, x_dim, z_dim, y_dim=0, nn="v1", **kwargs):
        super().__init__(x_dim, 2 * z_dim, distributions.DiagonalGaussian(), y_dim, nn, **kwargs)


class BernoulliDecoder(_Conditional):
    """p(x | z[, y]) = prod_d Bernoulli(sigmoid(logits_d)) from an MLP with x_dim logits."""

    def __init__(self, z_dim, x_dim, y_dim=0, nn="v1", **kwargs):
        super().__init__(z_dim, x_dim, distributions.BernoulliLogits(), y_dim, nn, **kwargs)


class GaussianDecoder(_Conditional):
    """p(x | z[, y]) = N(mean, variance * I) with a fixed variance (0.1 in the FSVAE): the MLP
    outputs the mean only (no activation, no clipping, as the reference)."""

    def __init__(self, z_dim, x_dim, y_dim=0, nn="v2", variance=0.1, **kwargs):
        super().__init__(z_dim, x_dim, distributions.FixedVarianceGaussian(variance), y_dim, nn,
                         **kwargs)


class Classifier(_Conditional):
    """q(y | x) = Categorical(softmax(logits)) from a ReLU MLP (784 -> 300 -> 300 -> classes)."""

    def __init__(self, x_dim, num_classes, nn="v1", **kwargs):
        super().__init__(x_dim, num_classes, distributions.CategoricalLogits(), 0, nn,
                         activation="relu", **kwargs)
