"""The networks of the models as Keras layers returning distributions.

``arch="mlp"`` (the default) is the reference's (docs/reference.md section 1): v1 (MNIST):
x_dim(+y) -> 300 -> 300 -> out, ELU; v2 (SVHN): x_dim(+y) -> 500 -> 500 -> out, ELU. Weights and
biases use PyTorch's ``nn.Linear`` default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), so that training
matches the reference (Keras' glorot-uniform kernels and zero biases train measurably differently
in the first thousand steps).

``arch="gated"`` is the same MLP with gated hidden layers (Dauphin et al., 2017), ``h' = (W h +
b) * sigmoid(V h + c)``, as the VampPrior paper's networks (Tomczak & Welling, 2018), with the
same initialisation.

``arch="burda"`` is Burda et al.'s (2016) one-layer networks: x_dim(+y) -> 200 -> 200 -> out,
tanh (the IWAE paper's, section 5), with the same initialisation (theirs was Glorot & Bengio's).

``arch="conv"`` sizes a convolutional network from the image shape (:class:`ConvBody`,
:class:`DeconvTail`): stride-2 4x4 convolutions with 32, 64, 128, 256 filters halve the image
until its sides are at most 7 (28 -> 14 -> 7; 32 -> 16 -> 8 -> 4), then one dense layer of the
MLP's width; the decoder mirrors it with transposed convolutions, cropping to the image size. The
label of a conditional model joins at the dense layer. Keras' default initialisation.

Every network takes flattened images (..., x_dim) and latents (..., z_dim) with any leading axes
(the IWAE's (samples, batch)), so the models never see the difference.
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import distributions
from tfp_vae.settings import ARCHS, LIKELIHOODS, check_choice

tfd = tfp.distributions

HIDDEN = {"v1": (300, 300), "v2": (500, 500)}
# The architectures of MLP (the other: conv), as MLP's arguments besides the reference's.
DENSE_ARCHS = {"mlp": {}, "gated": {"gated": True},
               "burda": {"hidden": (200, 200), "activation": "tanh"}}


def torch_linear(units, fan_in, activation=None, name=None):
    """A Dense layer initialised like PyTorch's ``nn.Linear``: kernel and bias
    U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.layers.Dense(
        units, activation=activation, name=name,
        kernel_initializer=keras.initializers.RandomUniform(-bound, bound),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound))


@keras.saving.register_keras_serializable(package="tfp_vae")
class MLP(keras.layers.Layer):
    """input_dim -> hidden... -> output_dim; ``activation`` after every layer but the last, or,
    with ``gated``, every hidden layer gated (Dauphin et al., 2017): ``(W h + b) * sigmoid(V h +
    c)``, the gate a layer of its own (``gate_i``) with the same initialisation.

    A Layer rather than ``keras.Sequential`` because the IWAE feeds it (samples, batch, dim)
    tensors, which a Sequential built for (batch, dim) rejects.
    """

    def __init__(self, input_dim, hidden, output_dim, activation="elu", gated=False, **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.gated = int(input_dim), bool(gated)
        sizes = [self.input_dim, *hidden, output_dim]
        inner = None if self.gated else activation
        self.dense = [torch_linear(units, fan_in, inner if i < len(hidden) else None,
                                   name=f"dense_{i}")
                      for i, (fan_in, units) in enumerate(zip(sizes[:-1], sizes[1:]))]
        self.gates = [torch_linear(units, fan_in, "sigmoid", name=f"gate_{i}")
                      for i, (fan_in, units) in enumerate(zip(sizes[:-2], sizes[1:-1]))
                      ] if self.gated else []

    def build(self, input_shape=None):
        fan_in = self.input_dim
        for i, layer in enumerate(self.dense):
            layer.build((None, fan_in))
            if i < len(self.gates):
                self.gates[i].build((None, fan_in))
            fan_in = layer.units

    def _layer(self, i, h):
        """Layer ``i`` on ``h`` (gated if it has a gate)."""
        out = self.dense[i](h)
        return out * self.gates[i](h) if i < len(self.gates) else out

    def call(self, h):
        for i in range(len(self.dense)):
            h = self._layer(i, h)
        return h

    def call_concatenated(self, parts):
        """``call(concat(parts, -1))`` without building the concatenation: the first layer's
        product is the sum of each part's product with its rows of the kernel, each taken at the
        part's own leading shape and broadcast only in the sum. When one part is shared by many
        rows (the SSVAE's x against its ten enumerated labels, (B, 784) against (10, B, 10)),
        its product is computed once instead of once per row (Keras' Dense has no such split)."""
        h = _split_product(self.dense[0], parts)
        if self.gates:
            h = h * _split_product(self.gates[0], parts)
        for i in range(1, len(self.dense)):
            h = self._layer(i, h)
        return h


def _split_product(dense, parts):
    """``dense(concat(parts, -1))``, each part's product with its rows of the kernel taken at
    the part's own leading shape (see :meth:`MLP.call_concatenated`)."""
    h, start = dense.bias, 0
    for part in parts:
        width = part.shape[-1]
        rows = dense.kernel[start:start + width]
        flat = tf.reshape(part, [-1, width])
        h = h + tf.reshape(tf.matmul(flat, rows),
                           tf.concat([tf.shape(part)[:-1], [dense.units]], 0))
        start += width
    return dense.activation(h)


def _lead_flat(x, inner_rank):
    """x (..., *inner) -> (prod(...), *inner) and the leading shape, to restore it after."""
    shape = tf.shape(x)
    lead = shape[:tf.rank(x) - inner_rank]
    return tf.reshape(x, tf.concat([[-1], shape[tf.rank(x) - inner_rank:]], 0)), lead


def _restore_lead(x, lead):
    return tf.reshape(x, tf.concat([lead, tf.shape(x)[1:]], 0))


def conv_levels(image_shape, max_levels=4, smallest=7):
    """The spatial sizes of the convolutional stack: (H, W), then halved (rounding up) until
    both sides are at most ``smallest`` (at most ``max_levels`` halvings)."""
    sizes = [tuple(int(d) for d in image_shape[:2])]
    while max(sizes[-1]) > smallest and len(sizes) <= max_levels:
        h, w = sizes[-1]
        sizes.append((-(-h // 2), -(-w // 2)))
    return sizes


CONV_FILTERS = (32, 64, 128, 256)


@keras.saving.register_keras_serializable(package="tfp_vae")
class ConvBody(keras.layers.Layer):
    """Flattened images (..., H*W*C) -> features (..., F): stride-2 4x4 convolutions with
    ``CONV_FILTERS`` filters, one per halving of :func:`conv_levels`, then flattened."""

    def __init__(self, image_shape, activation="elu", **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.levels = conv_levels(self.image_shape)
        self.convs = [keras.layers.Conv2D(f, 4, strides=2, padding="same", activation=activation,
                                          name=f"conv_{i}")
                      for i, f in enumerate(CONV_FILTERS[:len(self.levels) - 1])]
        h, w = self.levels[-1]
        self.output_dim = h * w * (self.convs[-1].filters if self.convs else self.image_shape[2])

    def build(self, input_shape=None):
        shape = (None, *self.image_shape)
        for conv in self.convs:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        self.built = True

    def call(self, x):
        flat, lead = _lead_flat(x, 1)
        h = tf.reshape(flat, [-1, *self.image_shape])
        for conv in self.convs:
            h = conv(h)
        return _restore_lead(tf.reshape(h, [tf.shape(h)[0], self.output_dim]), lead)


@keras.saving.register_keras_serializable(package="tfp_vae")
class DeconvTail(keras.layers.Layer):
    """Features (..., F) of the smallest level of :func:`conv_levels` -> flattened images
    (..., H*W*C): transposed stride-2 4x4 convolutions back up the levels (cropped to each
    level's size), then a 3x3 convolution to the image's channels (no activation)."""

    def __init__(self, image_shape, activation="elu", **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.levels = conv_levels(self.image_shape)
        filters = CONV_FILTERS[:len(self.levels) - 1]
        self.start_channels = filters[-1] if filters else self.image_shape[2]
        h, w = self.levels[-1]
        self.input_dim = h * w * self.start_channels
        self.activation = keras.activations.get(activation)
        self.deconvs = [keras.layers.Conv2DTranspose(f, 4, strides=2, padding="same",
                                                     activation=activation, name=f"deconv_{i}")
                        for i, f in enumerate(reversed((32,) + filters[:-1]))] if filters else []
        self.out = keras.layers.Conv2D(self.image_shape[2], 3, padding="same", name="out")

    def build(self, input_shape=None):
        shape = (None, *self.levels[-1], self.start_channels)
        for deconv, (h, w) in zip(self.deconvs, reversed(self.levels[:-1])):
            deconv.build(shape)
            shape = (None, h, w, deconv.filters)
        self.out.build(shape)
        self.built = True

    def call(self, features):
        flat, lead = _lead_flat(features, 1)
        h = tf.reshape(self.activation(flat), [-1, *self.levels[-1], self.start_channels])
        for deconv, (height, width) in zip(self.deconvs, reversed(self.levels[:-1])):
            h = deconv(h)[:, :height, :width, :]
        h = self.out(h)
        return _restore_lead(tf.reshape(h, [tf.shape(h)[0], math.prod(self.image_shape)]), lead)


class _Conditional(keras.layers.Layer):
    """Shared plumbing: runs the optional ``body`` on the inputs (a :class:`ConvBody`),
    concatenates ``[features, y]`` (inputs first, as the reference), runs the MLP, then the
    optional ``tail`` (a :class:`DeconvTail`), and hands the result to a distribution head."""

    def __init__(self, input_dim, output_dim, head, y_dim=0, nn="v1", activation="elu", body=None,
                 tail=None, hidden=None, gated=False, **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.y_dim = int(input_dim), int(y_dim)
        self.body, self.tail = body, tail
        features = body.output_dim if body is not None else self.input_dim
        out = tail.input_dim if tail is not None else output_dim
        self.net = MLP(features + self.y_dim, HIDDEN[nn] if hidden is None else hidden, out,
                       activation, gated, name="mlp")
        self.head = head
        self.build()  # The input size is known: create the variables now.

    def build(self, input_shape=None):
        if self.body is not None:
            self.body.build()
        self.net.build()
        if self.tail is not None:
            self.tail.build()
        self.built = True

    def call(self, inputs, y=None):
        if self.y_dim and y is None:
            raise ValueError(f"{self.name} is conditional on a label: pass y (one-hot, "
                             f"{self.y_dim} columns).")
        if self.body is not None:
            inputs = self.body(inputs)
        if y is None:
            h = self.net(inputs)
        elif inputs.shape.rank < y.shape.rank:
            # Features shared by several label rows, e.g. x (B, D) against the SSVAE's enumerated
            # labels (K, B, K): the features' product is taken once, not K times.
            h = self.net.call_concatenated([inputs, tf.cast(y, inputs.dtype)])
        else:
            # Broadcast the leading (sample, batch) axes and concatenate (the reference's order),
            # by adding zeros: the same values as tf.broadcast_to, in ops ONNX also has.
            y = tf.cast(y, inputs.dtype)
            inputs = tf.concat([inputs + tf.zeros_like(y[..., :1]),
                                y + tf.zeros_like(inputs[..., :1])], -1)
            h = self.net(inputs)
        return self.head(self.tail(h) if self.tail is not None else h)


@keras.saving.register_keras_serializable(package="tfp_vae")
class GaussianEncoder(_Conditional):
    """q(z | x[, y]) = N(mean, diag(variance)) from an MLP with 2*z_dim outputs."""

    def __init__(self, x_dim, z_dim, y_dim=0, nn="v1", **kwargs):
        super().__init__(x_dim, 2 * z_dim, distributions.DiagonalGaussian(), y_dim, nn, **kwargs)


@keras.saving.register_keras_serializable(package="tfp_vae")
class BernoulliDecoder(_Conditional):
    """p(x | z[, y]) = prod_d Bernoulli(sigmoid(logits_d)) from an MLP with x_dim logits."""

    def __init__(self, z_dim, x_dim, y_dim=0, nn="v1", **kwargs):
        super().__init__(z_dim, x_dim, distributions.BernoulliLogits(), y_dim, nn, **kwargs)


@keras.saving.register_keras_serializable(package="tfp_vae")
class GaussianDecoder(_Conditional):
    """p(x | z[, y]) = N(mean, variance * I) with a fixed variance (0.1 in the FSVAE): the MLP
    outputs the mean only (no activation, no clipping, as the reference)."""

    def __init__(self, z_dim, x_dim, y_dim=0, nn="v2", variance=0.1, **kwargs):
        super().__init__(z_dim, x_dim, distributions.FixedVarianceGaussian(variance), y_dim, nn,
                         **kwargs)


@keras.saving.register_keras_serializable(package="tfp_vae")
class Classifier(_Conditional):
    """q(y | x) = Categorical(softmax(logits)) from a ReLU MLP (784 -> 300 -> 300 -> classes)."""

    def __init__(self, x_dim, num_classes, nn="v1", activation="relu", **kwargs):
        super().__init__(x_dim, num_classes, distributions.CategoricalLogits(), 0, nn,
                         activation=activation, **kwargs)


def _check_arch(arch, image_shape):
    check_choice("arch", arch, ARCHS)


def encoder(arch, image_shape, z_dim, y_dim=0, nn="v1", name="encoder"):
    """q(z | x[, y]): the reference MLP (``arch="mlp"``), gated (``"gated"``), Burda et al.'s
    (``"burda"``) or a convolutional network."""
    _check_arch(arch, image_shape)
    x_dim = math.prod(image_shape)
    if arch in DENSE_ARCHS:
        return GaussianEncoder(x_dim, z_dim, y_dim=y_dim, nn=nn, name=name, **DENSE_ARCHS[arch])
    return _Conditional(x_dim, 2 * z_dim, distributions.DiagonalGaussian(), y_dim, nn,
                        body=ConvBody(image_shape, name="conv"), hidden=HIDDEN[nn][:1], name=name)


def decoder(arch, likelihood, image_shape, z_dim, y_dim=0, nn="v1", variance=0.1,
            name="decoder"):
    """p(x | z[, y]) of ``likelihood`` ("bernoulli": logits; "gaussian": the mean of a fixed
    ``variance``): the reference MLP or a convolutional network."""
    _check_arch(arch, image_shape)
    check_choice("likelihood", likelihood, LIKELIHOODS)
    x_dim = math.prod(image_shape)
    if arch in DENSE_ARCHS:
        if likelihood == "bernoulli":
            return BernoulliDecoder(z_dim, x_dim, y_dim=y_dim, nn=nn, name=name,
                                    **DENSE_ARCHS[arch])
        return GaussianDecoder(z_dim, x_dim, y_dim=y_dim, nn=nn, variance=variance, name=name,
                               **DENSE_ARCHS[arch])
    head = distributions.BernoulliLogits() if likelihood == "bernoulli" else \
        distributions.FixedVarianceGaussian(variance)
    return _Conditional(z_dim, x_dim, head, y_dim, nn, tail=DeconvTail(image_shape, name="deconv"),
                        hidden=HIDDEN[nn][:1], name=name)


def classifier(arch, image_shape, num_classes, nn="v1", name="classifier"):
    """q(y | x): the reference's ReLU MLP (gated, or Burda et al.'s tanh MLP, as the other
    networks) or a convolutional network with ReLUs."""
    _check_arch(arch, image_shape)
    x_dim = math.prod(image_shape)
    if arch in DENSE_ARCHS:
        return Classifier(x_dim, num_classes, nn=nn, name=name, **DENSE_ARCHS[arch])
    return _Conditional(x_dim, num_classes, distributions.CategoricalLogits(), 0, nn, "relu",
                        body=ConvBody(image_shape, "relu", name="conv"), hidden=HIDDEN[nn][:1],
                        name=name)


# ------------------------------------------------------------------------- your own networks
class UserNetwork(keras.layers.Layer):
    """What a user's Keras layer or model needs to serve as an encoder or decoder: images in
    their own layout (H, W, C), one leading batch axis (the model's sample and label axes are
    folded into it and restored), the label as a one-hot second input of conditional models,
    and its output made a distribution by ``head`` when it is a tensor.

    Written by hand because Keras layers see one batch axis while the bounds need several (the
    IWAE's (samples, batch)); ``tfp.layers`` would not help (Keras 2 only).
    """

    def __init__(self, net, head, in_shape, out_shape, event_size, y_dim=0, **kwargs):
        super().__init__(**kwargs)
        self.net, self.head = net, head
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.event_size = int(event_size)  # of a distribution the network returns
        self.y_dim = int(y_dim)
        self.conditional = self.y_dim > 0

    def call(self, inputs, y=None):
        if self.conditional and y is None:
            raise ValueError(f"{self.name} is conditional on a label: pass y.")
        if self.conditional:  # bring inputs and labels to the same leading axes
            y = tf.cast(y, inputs.dtype)
            inputs, y = (inputs + tf.zeros_like(y[..., :1]), y + tf.zeros_like(inputs[..., :1]))
        lead = tf.shape(inputs)[:-1]
        flat = tf.reshape(inputs, [-1, *self.in_shape])
        out = self.net([flat, tf.reshape(y, [-1, y.shape[-1]])] if self.conditional else flat)
        if isinstance(out, tfd.Distribution):
            return self._as_flat_event(out, lead)
        out = tf.reshape(out, tf.concat([lead, [math.prod(self.out_shape)]], 0))
        return self.head(out)

    def _as_flat_event(self, dist, lead):
        """``dist`` (batch (N,), event the output's shape) with a flat event and the leading
        axes of the inputs as its batch."""
        size = self.event_size
        if tuple(dist.event_shape) != (size,):
            if math.prod(dist.event_shape) != size:
                raise ValueError(f"{self.name}: your network's distribution has event shape "
                                 f"{tuple(dist.event_shape)}; it must hold {size} values.")
            dist = tfp.bijectors.Reshape(event_shape_out=[size],
                                         event_shape_in=dist.event_shape)(dist)
        return _Unfolded(dist, lead) if lead.shape[0] != 1 else dist

    def build(self, input_shape=None):
        """Builds the user's network on a batch of one (Keras builds lazily) and checks the size
        of what it returns, so that a network of the wrong width is refused when the model is
        built, not by a reshape deep inside its first bound."""
        x = tf.zeros([1, *self.in_shape])
        out = self.net([x, tf.zeros([1, self.y_dim])] if self.conditional else x)
        if isinstance(out, tfd.Distribution):
            got, need, what = math.prod(out.event_shape), self.event_size, "a distribution"
        else:
            got, need, what = math.prod(out.shape[1:]), math.prod(self.out_shape), "a tensor"
        if got != need:
            raise ValueError(f"{self.describe()} returns {what} of {got} values per example; the "
                             f"model needs a tensor of {math.prod(self.out_shape)} values (shape "
                             f"{self.out_shape}) or a distribution whose events hold "
                             f"{self.event_size}.")
        self.built = True

    def describe(self):
        return f"your {type(self.net).__name__} {self.net.name!r}"


class _Unfolded(tfd.BatchReshape):
    """``tfd.BatchReshape`` whose ``log_prob`` broadcasts its argument to the batch first (TFP's
    refuses to), as the bounds evaluate one x against many samples (the IWAE's (samples, batch))."""

    def log_prob(self, value, name="log_prob", **kwargs):
        value = tf.convert_to_tensor(value)
        shape = tf.concat([self.batch_shape_tensor(), self.event_shape_tensor()], 0)
        return super().log_prob(tf.broadcast_to(value, shape), name=name, **kwargs)


def yours_as_encoder(net, image_shape, z_dim, y_dim=0):
    """A user's network ``net`` as q(z | x[, y]): images (N, H, W, C) (and one-hot labels) to a
    tensor (N, 2 z_dim), the location and an unconstrained scale of a diagonal Gaussian (as
    :class:`~tfp_vae.distributions.DiagonalGaussian`), or to any ``tfd`` distribution with event
    shape (z_dim,)."""
    layer = UserNetwork(net, distributions.DiagonalGaussian(), image_shape, (2 * z_dim,), z_dim,
                        y_dim=y_dim, name="encoder")
    layer.build()
    return layer


def yours_as_decoder(net, likelihood, image_shape, z_dim, y_dim=0, variance=0.1):
    """A user's network ``net`` as p(x | z[, y]): latents (N, z_dim) (and one-hot labels) to a
    tensor of the image's shape, (N, H, W, C) or (N, H*W*C) (logits for ``"bernoulli"``, means
    for ``"gaussian"``), or to any ``tfd`` distribution whose event is the image."""
    head = distributions.BernoulliLogits() if likelihood == "bernoulli" else \
        distributions.FixedVarianceGaussian(variance)
    layer = UserNetwork(net, head, (z_dim,), image_shape, math.prod(image_shape), y_dim=y_dim,
                        name="decoder")
    layer.build()
    return layer
