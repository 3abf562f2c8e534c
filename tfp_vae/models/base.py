"""``BaseVAE``: the Keras model every tfp_vae model derives from.

A model is an encoder q(z | x), a decoder p(x | z) and a prior p(z), each a Keras layer whose
output is a ``tfd`` distribution; the bounds of :mod:`tfp_vae.bounds` combine them. Subclasses
choose the prior, the KL estimator and, where the objective differs, ``loss_and_terms``.

Training works from any script::

    with strategy.scope():            # optional: any tf.distribute strategy
        model = tfp_vae.models.VAE(z_dim=10)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(dataset, epochs=..., steps_per_epoch=..., callbacks=[...])

``dataset`` yields image batches (B, 784) in [0, 1] (or ``(images, labels)`` tuples, labels
unused by the unsupervised models); ``tfp_vae.data.train_dataset`` gives the reference's
dynamically binarised stream.

Randomness is stateless. A training step draws from the seed ``(seed, step)`` folded with the
replica id, so a run is a deterministic function of its seed and restarting from a checkpoint
replays exactly the same random numbers. Every public method that samples takes an explicit
``seed`` (int tensor of shape [2]); the same seed gives the same result.
"""

import math

import keras
import tensorflow as tf

from tfp_vae import bounds, compat, distributions, networks, registry
from tfp_vae.seeds import as_seed
from tfp_vae.settings import ARCHS, LIKELIHOODS, MAX_SEED, OBJECTIVES, check_choice


def whole(name, value, low=1, high=None):
    """``value`` as an int when it is a whole number >= ``low`` (and <= ``high``; 2.0 passes,
    2.5 and True do not); ValueError naming the argument ``name`` otherwise
    (:func:`tfp_vae.registry.check_number`)."""
    return registry.check_number(name, value, int, minimum=low, maximum=high, error=ValueError,
                                 flag=False)


def count(name, value, low=0):
    """A count given to a method (draws, steps, columns): a whole number >= ``low`` from a
    script (ValueError otherwise, instead of TensorFlow's error about a dimension, or 2.5 taken
    as 2); a tensor, in a traced function or an exported signature, as it is."""
    return value if tf.is_tensor(value) else whole(name, value, low)


def _deserialized(net):
    """A network given to a constructor: a Keras layer, or its config from ``get_config``."""
    if isinstance(net, dict):
        return keras.saving.deserialize_keras_object(net)
    if net is not None and not isinstance(net, keras.layers.Layer):
        raise TypeError(f"encoder and decoder must be Keras layers or models, got "
                        f"{type(net).__name__}.")
    return net


BOUND_SALT = 0xB0D  # binarises uint8 images given to a bound, apart from its other draws


def unpack_x_y(data):
    """``(x, y)`` of a batch as Keras gives it to a step (``x``, ``(x,)`` or ``(x, y)``; y None
    when absent). A third element, sample weights, is refused: the objectives weigh every example
    alike, and Keras would otherwise pass the weights on for the step to drop silently."""
    x, y, weights = keras.utils.unpack_x_y_sample_weight(data)
    if weights is not None:
        raise ValueError(_NO_WEIGHTS.format("sample_weight (or a third element in the data's "
                                            "tuples)"))
    return x, y


_NO_WEIGHTS = ("tfp_vae's models weigh every example alike: {} is not supported; repeat or "
               "subsample the examples instead.")


def _check_float32(model):
    """Raises ValueError unless ``model`` and the layers it builds (which take Keras' global
    dtype policy) compute in float32: TFP's distributions, the bounds and the exported signatures
    are float32, and another policy would fail deep inside TFP instead."""
    for policy in (model.dtype_policy, keras.config.dtype_policy()):
        if (policy.compute_dtype, policy.variable_dtype) != ("float32", "float32"):
            raise ValueError(f"tfp_vae's models compute in float32; the dtype policy here is "
                             f"{policy.name!r}: call keras.config.set_dtype_policy('float32') "
                             f"(and pass no other dtype=) before building the model.")


def _refuse_weights(kwargs):
    """``fit``'s and ``evaluate``'s weights: Keras drops ``sample_weight`` when there is no
    ``y`` (and ``class_weight`` has no classes to weigh here), so they are refused, not lost."""
    for name in ("sample_weight", "class_weight"):
        if kwargs.get(name) is not None:
            raise ValueError(_NO_WEIGHTS.format(name))


def binarize_seed(seed, salt=0x5EED):
    """The seed of a step's dynamic binarisation, apart from the step's other draws."""
    return None if seed is None else tf.random.experimental.stateless_fold_in(seed, salt)


def global_batch_mean(per_example):
    """This replica's share of the mean over the global batch: ``sum(local values) / N``, where
    ``N`` is the number of examples on all replicas together (an all-reduce of the local sizes).

    Gradients are summed across replicas, so the shares add up to the mean over the global
    batch, each example weighted ``1 / N`` even when the batch splits unevenly (97 over two
    replicas is 49 + 48; dividing each replica's mean by the number of replicas, as Keras scales
    its own losses, would weigh the two halves about 2 % apart). On one replica it is the plain
    mean, bit for bit as before.
    """
    context = _summing_replicas()
    if context is None:
        return tf.reduce_mean(per_example)
    local = tf.cast(tf.shape(per_example)[0], per_example.dtype)
    return tf.reduce_sum(per_example) / context.all_reduce("SUM", local)


def _summing_replicas():
    """The replica context when this step runs on several replicas whose gradients are summed;
    None on one replica or outside a replica context (then a mean is the plain mean)."""
    context = tf.distribute.get_replica_context()
    if tf.distribute.get_strategy().num_replicas_in_sync == 1 or context is None:
        return None
    return context


def free_bits(kl_share, floor):
    """Free bits (Kingma et al., 2016, eq. 15, the whole latent as one group): this replica's
    share (as :func:`global_batch_mean` gives it) of ``max(floor, mean KL)``, the mean over the
    global batch. Below ``floor`` nats the KL term is a constant: the optimiser gains nothing by
    pressing the posterior onto the prior further, which keeps latent units from collapsing."""
    context = _summing_replicas()
    total, share = tf.stop_gradient(kl_share), floor
    if context is not None:  # as global_batch_mean: shares of one mean
        total = context.all_reduce("SUM", total)
        share = floor / context.num_replicas_in_sync
    return tf.where(total > floor, kl_share, tf.cast(share, kl_share.dtype))


@keras.saving.register_keras_serializable(package="tfp_vae")
class BaseVAE(keras.Model):
    """Encoder q(z|x), decoder p(x|z), prior p(z); trained on the negative ELBO.

    Args:
      z_dim: latent dimension.
      x_dim: observation dimension (784 for MNIST); implied by ``image_shape``.
      seed: the run's seed (all in-step randomness derives from it and the step number).
      iwae_max_rows: memory bound for :meth:`negative_iwae` (samples per chunk * batch size);
        by default about 32 MB of pixels per chunk (10,000 rows of 784).
      image_shape: (height, width, channels) of one image; default (28, 28, 1), MNIST's (or
        (1, x_dim, 1) when only ``x_dim`` is given). Images enter flattened, (batch, x_dim).
      likelihood: p(x | z): ``"bernoulli"`` (logits; binary or [0, 1] pixels, the reference's)
        or ``"gaussian"`` (a learned mean with a fixed ``variance`` on every pixel, the FSVAE's).
      arch: ``"mlp"`` (the reference's networks), ``"gated"`` (the same with gated layers,
        :class:`tfp_vae.networks.MLP`), ``"burda"`` (the IWAE paper's tanh MLPs 200-200) or
        ``"conv"`` (convolutional networks sized from ``image_shape``, :mod:`tfp_vae.networks`).
      variance: the fixed variance of the Gaussian likelihood.
      kl_warmup: train on ``rec + w * KL`` with ``w`` rising linearly from 0 to 1 over this many
        steps (:func:`tfp_vae.bounds.kl_warmup_weight`; 0: none).
      free_bits: train on ``rec + max(free_bits, mean KL)`` (:func:`free_bits`; 0: none).
        Neither changes what is reported or evaluated: the true bound.

    Subclasses (each a kind of :mod:`tfp_vae.registry`) may override :meth:`make_prior`,
    ``analytic_kl`` and :meth:`loss_and_terms`.
    """

    # Whether the networks take a label y (the conditional models).
    conditional = False
    analytic_kl = True
    # The per-example terms that loss_and_terms reports, each as a Keras Mean metric.
    metric_names = ("nelbo", "kl", "rec")
    # Names of the fields of negative_elbo's result (the keys of its export signature).
    bound_names = ("nelbo", "kl", "rec")
    # The size of the reference's MLPs: "v1" (300 units, MNIST) or "v2" (500 units, SVHN).
    nn = "v1"

    def __init__(self, z_dim=10, x_dim=None, seed=0, iwae_max_rows=None, image_shape=None,
                 likelihood="bernoulli", arch="mlp", variance=0.1, objective="elbo",
                 train_samples=1, encoder=None, decoder=None, kl_warmup=0, free_bits=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        _check_float32(self)
        # Your own networks (kept untracked here: the encoder and decoder layers track them).
        object.__setattr__(self, "_nets", {"encoder": _deserialized(encoder),
                                           "decoder": _deserialized(decoder)})
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got "
                             f"{objective!r}.")
        if objective != "elbo" and self.conditional:
            raise ValueError(f"the {type(self).__name__} trains on its ELBO only; "
                             f"objective='iwae' is for the unsupervised models.")
        self.objective, self.train_samples = objective, whole("train_samples", train_samples)
        self.kl_warmup = whole("kl_warmup", kl_warmup, low=0)
        if not (math.isfinite(float(free_bits)) and float(free_bits) >= 0):
            raise ValueError(f"free_bits must be a finite number >= 0, got {free_bits!r}.")
        self.free_bits = float(free_bits)
        if objective != "elbo" and (self.kl_warmup or self.free_bits):
            raise ValueError("kl_warmup and free_bits weigh the KL term of the ELBO; "
                             "objective='iwae' has none.")
        if objective == "iwae":
            self.metric_names = ("niwae", "kl", "rec")
        z_dim = whole("z_dim", z_dim)
        if image_shape is None:
            image_shape = (28, 28, 1) if x_dim in (None, 784) else (1, whole("x_dim", x_dim), 1)
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (height, width, channels), got {image_shape}.")
        self.image_shape = tuple(whole("image_shape", d) for d in image_shape)
        if x_dim is not None and whole("x_dim", x_dim) != math.prod(self.image_shape):
            raise ValueError(f"x_dim={x_dim} is not the size of image_shape {self.image_shape}.")
        check_choice("likelihood", likelihood, LIKELIHOODS)
        check_choice("arch", arch, ARCHS)
        if not float(variance) > 0:
            raise ValueError(f"variance must be positive, got {variance}.")
        self.z_dim, self.x_dim = z_dim, math.prod(self.image_shape)
        self.seed = whole("seed", seed, low=0, high=MAX_SEED)  # an int32 in the step's seeds
        self.likelihood, self.arch, self.variance = likelihood, arch, float(variance)
        self.iwae_max_rows = whole("iwae_max_rows", iwae_max_rows if iwae_max_rows is not None
                                   else self.default_iwae_max_rows())
        self.encoder = self.make_encoder()
        self.decoder = self.make_decoder()
        self.prior_layer = self.make_prior()
        self.make_extra_layers()
        self.trackers = [keras.metrics.Mean(name) for name in self.metric_names]
        # The training objective, as Keras' callbacks expect it (EarlyStopping, ModelCheckpoint
        # and ReduceLROnPlateau watch "loss" or "val_loss" by default).
        self.loss_tracker = keras.metrics.Mean("loss")
        self._eval_seeds = keras.random.SeedGenerator(self.seed + 1)
        self._fresh_seeds = keras.random.SeedGenerator(self.seed + 2)
        self.build((None, self.x_dim))

    # ----------------------------------------------------------------------------- structure
    def default_iwae_max_rows(self):
        """Rows of an IWAE chunk: about 8 million pixels (10,000 rows of MNIST's 784), at least
        100."""
        return max(100, min(10_000, 8_000_000 // self.x_dim))

    @property
    def binarized(self):
        """Whether the model's data are binarised (the Bernoulli likelihood: dynamic
        binarisation in training, static in evaluation)."""
        return self.likelihood == "bernoulli"

    @property
    def picture_keys(self):
        """The keys of :meth:`observe`'s dict that hold a sample picture and a mean picture:
        Bernoulli draws and means; for the Gaussian, clip(mean, 0, 1) both (as the reference
        pictures the FSVAE; a draw adds N(0, variance) noise to every pixel)."""
        return ("x", "probs") if self.likelihood == "bernoulli" else ("image", "image")

    @property
    def y_dim(self):
        """The width of the one-hot label the networks take (0: unconditional)."""
        return 0

    def make_encoder(self):
        """The layer of q(z | x): the ``encoder`` given to the constructor
        (:func:`tfp_vae.networks.yours_as_encoder`), else the built-in network of ``arch``."""
        if self._nets["encoder"] is not None:
            return networks.yours_as_encoder(self._nets["encoder"], self.image_shape, self.z_dim,
                                             self.y_dim)
        return networks.encoder(self.arch, self.image_shape, self.z_dim, y_dim=self.y_dim,
                                nn=self.nn, name="encoder")

    def make_decoder(self):
        """The layer of p(x | z): the ``decoder`` given to the constructor
        (:func:`tfp_vae.networks.yours_as_decoder`), else the built-in network of ``arch``."""
        if self._nets["decoder"] is not None:
            return networks.yours_as_decoder(self._nets["decoder"], self.likelihood,
                                             self.image_shape, self.z_dim, self.y_dim,
                                             self.variance)
        return networks.decoder(self.arch, self.likelihood, self.image_shape, self.z_dim,
                                y_dim=self.y_dim, nn=self.nn, variance=self.variance,
                                name="decoder")

    def make_prior(self):
        """The layer of p(z): its ``distribution()`` is built on each call, so that gradients
        reach a learned prior's variables (see the GMVAE)."""
        return distributions.StandardNormalPrior(self.z_dim, name="prior")

    def make_extra_layers(self):
        """Hook for subclasses with more networks (all layers must exist before the model is
        built at the end of __init__)."""

    def build(self, input_shape=None):
        self.built = True  # Every network creates its variables when it is constructed.

    def get_config(self):
        config = {"z_dim": self.z_dim, "x_dim": self.x_dim, "seed": self.seed,
                  "iwae_max_rows": self.iwae_max_rows, "image_shape": list(self.image_shape),
                  "likelihood": self.likelihood, "arch": self.arch, "variance": self.variance,
                  "objective": self.objective, "train_samples": self.train_samples,
                  "kl_warmup": self.kl_warmup, "free_bits": self.free_bits}
        for name, net in self._nets.items():  # your own networks, in Keras' format
            if net is not None:
                config[name] = keras.saving.serialize_keras_object(net)
        return config

    def describe(self):
        """The model as distributions: ``[(name, description)]`` for :meth:`summary`."""
        given = ", y" if self.conditional else ""
        shape = "x".join(str(d) for d in self.image_shape)
        likelihood = ("Bernoulli (logits)" if self.likelihood == "bernoulli" else
                      f"Gaussian, fixed variance {self.variance:g}")
        return [(f"q(z | x{given})", f"diagonal Gaussian over z ({self.z_dim}), "
                                     f"{self._network_name(self.encoder)}"),
                (f"p(x | z{given})", f"{likelihood} over x ({shape}), "
                                     f"{self._network_name(self.decoder)}"),
                ("p(z)", self.prior_layer.describe()),
                ("objective", f"negative IWAE-{self.train_samples} (the importance-weighted "
                              f"bound of Burda et al., 2016)" if self.objective == "iwae" else
                 "negative ELBO, " + ("analytic" if self.analytic_kl else "Monte-Carlo") + " KL"
                 + (f"; KL warm-up over {self.kl_warmup} steps" if self.kl_warmup else "")
                 + (f"; free bits {self.free_bits:g}" if self.free_bits else ""))]

    def _network_name(self, layer):
        if isinstance(layer, networks.UserNetwork):
            return layer.describe()
        return f"{self.arch} {layer.name}"

    def summary(self, *args, print_fn=None, **kwargs):
        """Keras' table of layers and parameters, then the model's distributions
        (:meth:`describe`): Keras can show no output shape for layers that return
        distributions."""
        super().summary(*args, print_fn=print_fn, **kwargs)
        lines = [f" {name:<16}{text}" for name, text in self.describe()]
        (print_fn or print)("\n".join(lines))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # See compat.build_without_data: Keras' own build fails on unevenly split batches.
        if not compat.build_without_data(self):
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @property
    def metrics(self):
        return [self.loss_tracker, *self.trackers]

    # ----------------------------------------------------------------------- distributions
    def prior(self):
        """p(z) as a ``tfd`` distribution with event shape (z_dim,)."""
        return self.prior_layer.distribution()

    def encode(self, x, y=None):
        """q(z | x): a diagonal Gaussian with batch shape (B,) and event shape (z_dim,).
        ``y``, the labels of the conditional models, is ignored here."""
        return self.encoder(x)

    def decode(self, z, y=None):
        """p(x | z): independent Bernoullis (or Gaussians of fixed variance) over the x_dim
        pixels (``y`` ignored, as in :meth:`encode`)."""
        return self.decoder(z)

    def two_seeds(self, seed=None):
        """Two independent stateless seeds from ``seed`` (:meth:`fresh_seed`), e.g. for z and x."""
        return tf.unstack(tf.random.experimental.stateless_split(self.fresh_seed(seed), 2))

    def fresh_seed(self, seed=None):
        """``seed`` as a stateless seed, or, when None, a new one from the model's generator
        (each call draws anew; pass a seed to repeat a result)."""
        if seed is None:
            return tf.cast(self._fresh_seeds.next(), tf.int32)
        return as_seed(seed)

    def batch_labels(self, y, batch=None):
        """The labels a public method was given with ``batch`` (its images or noise), checked by
        the conditional models (:mod:`tfp_vae.labels`); the others ignore them."""
        return y

    def encoded_moments(self, x, y=None):
        """The mean and variance of q(z | x (, y)) for checked images ``x``: what :meth:`embed`
        and the ``encode`` signature give (a model whose posterior has no closed-form moments
        overrides this one method)."""
        q = self.encode(x, y)
        return q.mean(), q.variance()

    def embed(self, x, y=None):
        """E[z | x (, y)], the posterior means: a deterministic embedding of the images (any
        layout of :meth:`check_inputs`)."""
        return self.encoded_moments(self.check_inputs(x), self.batch_labels(y, x))[0]

    def reconstruct(self, x, y=None):
        """The mean picture (:attr:`picture_keys`) of p(x | z = E[z | x] (, y))."""
        y = self.batch_labels(y, x)
        return self.decoded(self.decode(self.embed(x, y), y))[self.picture_keys[1]]

    def pseudo_input_pictures(self, count=100):
        """Learned pseudo-inputs to picture (the VampPrior's); None for other models."""
        return None

    def interpolate(self, x1, x2, steps=8, y=None):
        """The mean pictures along the straight line between the embeddings of ``x1`` and
        ``x2`` (each a batch of images; ``steps`` points from one to the other, both included):
        shape (steps, batch, x_dim)."""
        steps, y = count("steps", steps, low=2), self.batch_labels(y, x1)
        z1, z2 = self.embed(x1, y), self.embed(x2, y)
        t = tf.reshape(tf.linspace(0.0, 1.0, steps), [-1, 1, 1])
        z = (1.0 - t) * z1 + t * z2
        return self.decoded(self.decode(z, y))[self.picture_keys[1]]

    def export(self, filepath, format="tf_saved_model", verbose=None, **kwargs):
        """Writes the model as the SavedModel ``bin/train`` exports (:func:`tfp_vae.export.export`:
        every signature, the metadata, input checks); Keras' method, under its name."""
        if format != "tf_saved_model":
            raise ValueError(f"tfp_vae models export as format='tf_saved_model', got {format!r}.")
        from tfp_vae import export
        return export.export(self, filepath, **kwargs)

    def call(self, x, training=False):
        """Deterministic reconstruction: the means of p(x | z = E[q(z | x)])."""
        return self.decode(self.embed(x)).mean()

    def observe(self, p_x, seed):
        """Draws from p(x | z) as a dict of pictures (``picture_keys`` names the sample picture
        and the mean picture): Bernoulli ``{"x": the draws, "probs": the means}``; Gaussian
        ``{"x": a draw of N(mean, variance I), "mean": the mean, "image": clip(mean, 0, 1)}``."""
        mean = p_x.mean()
        if self.likelihood == "bernoulli":
            return {"x": p_x.sample(seed=seed), "probs": mean}
        return {"x": p_x.sample(seed=seed), "mean": mean, "image": tf.clip_by_value(mean, 0, 1)}

    def decoded(self, p_x):
        """p(x | z) as tensors, for the ``decode`` signature: Bernoulli ``{"probs", "logits"}``,
        Gaussian ``{"mean", "image"}``."""
        if self.likelihood == "bernoulli":
            return {"probs": p_x.mean(), "logits": p_x.distribution.logits}
        mean = p_x.mean()
        return {"mean": mean, "image": tf.clip_by_value(mean, 0, 1)}

    def sample(self, n, y=None, seed=None):
        """n draws z ~ p(z), x ~ p(x | z): ``{"x": the draws, "probs": the means of p(x | z)}``
        (see :meth:`observe`; ``y`` is for the conditional models). Without a seed, fresh draws
        at every call; with one, the same draws every time."""
        n = count("n", n)
        z_seed, x_seed = self.two_seeds(seed)
        return self.observe(self.decode(self.prior().sample(n, seed=z_seed)), x_seed)

    def prior_transform(self, eps, u=None):
        """z of the prior from noise given as inputs: ``eps`` ~ N(0, I) of shape (n, z_dim) and,
        for mixture priors, ``u`` ~ U(0, 1) of shape (n,) choosing the component. For N(0, I),
        z = eps. No random op, so that generation runs outside TensorFlow (ONNX)."""
        return tf.convert_to_tensor(eps, self.compute_dtype)

    def generate(self, eps, u=None, y=None):
        """The mean pictures (:attr:`picture_keys`) of p(x | z (, y)) at z =
        :meth:`prior_transform` of the given noise: sampling with the noise as an input."""
        y = self.batch_labels(y, eps)
        return self.decoded(self.decode(self.prior_transform(eps, u), y))[self.picture_keys[1]]

    def sample_grid(self, seed):
        """The reference picture: 200 samples as (images, rows=10, cols=20)."""
        return self.sample(200, seed=seed)[self.picture_keys[0]], 10, 20

    # --------------------------------------------------------------------------------- bounds
    def negative_elbo(self, x, y=None, seed=None):
        """Per-example single-sample negative ELBO, :func:`tfp_vae.bounds.negative_elbo` (of
        -log p(x | y) for a model of x given its label y). ``x`` in any layout of
        :meth:`check_inputs` (uint8 images of a Bernoulli model binarised from ``seed``)."""
        seed, y = self.fresh_seed(seed), self.batch_labels(y, x)
        x = self.check_inputs(x, binarize_seed(seed, BOUND_SALT))
        return bounds.negative_elbo(x, self.encode(x, y), lambda z: self.decode(z, y),
                                    self.prior(), seed, analytic_kl=self.analytic_kl)

    def negative_iwae(self, x, num_samples, y=None, seed=None, max_rows="model"):
        """Per-example negative IWAE-m bound, :func:`tfp_vae.bounds.negative_iwae`, in chunks of
        the model's ``iwae_max_rows`` (``max_rows=None``: all m samples at once, for
        training). ``x`` as for :meth:`negative_elbo`."""
        rows = self.iwae_max_rows if max_rows == "model" else max_rows
        seed, y = self.fresh_seed(seed), self.batch_labels(y, x)
        x = self.check_inputs(x, binarize_seed(seed, BOUND_SALT))
        return bounds.negative_iwae(x, self.encode(x, y), lambda z: self.decode(z, y),
                                    self.prior(), num_samples, seed, max_rows=rows)

    # -------------------------------------------------------------------------------- training
    def check_inputs(self, x, binarize_seed=None):
        """A batch of images as the model computes with them, flat float32 ``(B, x_dim)`` in
        [0, 1], from any layout: flat ``(B, D)`` or ``(B, H, W, C)`` (``(B, H, W)`` for grey),
        uint8 in 0..255 (divided by 255) or float in [0, 1].

        uint8 images of a Bernoulli model are binarised when ``binarize_seed`` is given (the
        training and evaluation steps give one: dynamic binarisation, x_d ~ Bernoulli(x_d / 255)
        from a stateless seed, as ``bin/train``'s stream does); float images are used as they
        are. Layouts and dtypes are checked when traced; values lie in [0, 1] (no NaN) at run
        time."""
        if isinstance(x, (tuple, list)):
            raise ValueError(f"{type(self).__name__} expects a batch of images, got a "
                             f"{type(x).__name__} of {len(x)} items.")
        x = tf.convert_to_tensor(x)
        shape = tuple(x.shape[1:])
        layouts = {(self.x_dim,), self.image_shape}
        if self.image_shape[2] == 1:
            layouts.add(self.image_shape[:2])
        if x.shape.rank is None or shape not in layouts:
            raise ValueError(f"{type(self).__name__} expects images of shape (batch, "
                             f"{', '.join(map(str, self.image_shape))}) or flattened (batch, "
                             f"{self.x_dim}), got {tuple(x.shape)}.")
        if x.dtype == tf.uint8:
            x = tf.reshape(tf.cast(x, self.compute_dtype) / 255.0, [-1, self.x_dim])
            if binarize_seed is not None and self.binarized:
                u = tf.random.stateless_uniform(tf.shape(x), seed=binarize_seed, dtype=x.dtype)
                x = tf.cast(u < x, x.dtype)
            return x
        if not x.dtype.is_floating:
            raise TypeError(f"{type(self).__name__} expects uint8 images (0..255) or float ones "
                            f"in [0, 1], got dtype {x.dtype.name}.")
        x = tf.reshape(tf.cast(x, self.compute_dtype), [-1, self.x_dim])
        check = tf.debugging.Assert(
            tf.logical_and(tf.reduce_all(x >= 0.0), tf.reduce_all(x <= 1.0)),
            ["Float images must lie in [0, 1] and contain no NaN (uint8 images are divided by "
             "255 for you). Min and max of the offending batch:", tf.reduce_min(x),
             tf.reduce_max(x)])
        with tf.control_dependencies([check]):
            return tf.identity(x)

    def unpack(self, data, seed=None):
        """The images of a training batch (``x`` or ``(x, labels...)``), checked; uint8 images
        of Bernoulli models binarised from ``seed`` (:meth:`check_inputs`)."""
        x, _ = unpack_x_y(data)
        return self.check_inputs(x, binarize_seed(seed))

    def step_seed(self):
        """The seed of this training step: (seed, step) folded with the replica id."""
        seed = tf.stack([tf.constant(self.seed, tf.int32),
                         tf.cast(self.optimizer.iterations, tf.int32)])
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.random.experimental.stateless_fold_in(seed, tf.cast(replica, tf.int32))

    def loss_and_terms(self, data, seed):
        """This replica's loss and the per-example terms to report, ``{metric name: values}``.

        The loss is already scaled for gradients that are summed across replicas (see
        :func:`global_batch_mean`). The base model minimises the negative ELBO and reports it with
        its KL and reconstruction parts; with ``objective="iwae"`` it minimises the negative
        IWAE-``train_samples`` of each example (the gradient of the importance-weighted bound,
        not the mean of K ELBOs; Burda et al., 2016), drawn as the evaluation's IWAE draws its
        first chunk (:meth:`negative_iwae`, the same seeds; all K samples at once, since
        back-propagation holds them all anyway; ``bin/train`` checks their memory first), and
        reports it as ``niwae``
        with the sample means of its KL and reconstruction parts."""
        x = self.unpack(data, seed)
        if self.objective == "iwae":
            bound = self.negative_iwae(x, self.train_samples, seed=seed, max_rows=None)
            return global_batch_mean(bound.value), dict(zip(self.metric_names, bound))
        bound = self.negative_elbo(x, seed=seed)
        return self.elbo_loss(bound), dict(zip(self.bound_names, bound))

    def kl_weight(self):
        """The KL term's weight in this training step: the warm-up's (``None`` without one)."""
        if not self.kl_warmup:
            return None
        optimizer = getattr(self, "optimizer", None)  # Keras sets it in compile()
        if optimizer is None:  # not compiled: no step, the warm-up is over
            return 1.0
        return bounds.kl_warmup_weight(optimizer.iterations, self.kl_warmup)

    def elbo_loss(self, bound):
        """This replica's share of the training loss of a negative-ELBO :class:`Bound`: the mean
        of ``rec + w * KL`` over the global batch, ``w`` the step's :meth:`kl_weight`, the KL
        raised to the model's free bits. Without either, the mean of the bound itself."""
        weight = self.kl_weight()
        if not self.free_bits:  # one mean (and one all-reduce)
            return global_batch_mean(bound.value if weight is None else
                                     bound.rec + weight * bound.kl)
        kl = free_bits(global_batch_mean(bound.kl), self.free_bits)
        return global_batch_mean(bound.rec) + (kl if weight is None else weight * kl)

    def _update_metrics(self, loss, terms):
        # This replica's share of the global batch mean, times the replicas: their mean is the
        # global batch mean (see global_batch_mean). Weighted by the global batch's size, as
        # Keras weighs its own loss tracker, so that a run's loss is the mean over its examples
        # (the nelbo's, without warm-up or free bits) also when an epoch ends in a partial batch.
        per_example = [terms[name] for name in self.metric_names if name in terms]
        size = tf.cast(tf.shape(per_example[0])[0], tf.float32) if per_example else \
            tf.constant(1.0)  # nothing per example: the loss alone, weighed alike
        context = _summing_replicas()
        if context is not None:
            size = context.all_reduce("SUM", size)
        self.loss_tracker.update_state(loss * tf.distribute.get_strategy().num_replicas_in_sync,
                                       sample_weight=size)
        for tracker in self.trackers:
            if tracker.name in terms:
                tracker.update_state(terms[tracker.name])
        # Only what this data can report: e.g. the SSVAE's cross-entropy and accuracy need labels.
        results = {"loss": self.loss_tracker.result()}
        results.update({tracker.name: tracker.result() for tracker in self.trackers
                        if tracker.name in terms})
        return compat.reducible_step_outputs(results)

    def fit(self, x=None, *args, **kwargs):
        """Keras' ``fit``; a ``tf.data.Dataset`` is taken as it is (``shuffle`` defaults to
        False for it, which Keras ignores anyway but warns about when left True)."""
        self._refuse_compiled_loss()
        _refuse_weights(kwargs)
        self._check_array_labels(args, kwargs)
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)
        return super().fit(x, *args, **kwargs)

    def _check_array_labels(self, args, kwargs):
        """Labels given beside the images (``fit(x, y)``, ``evaluate(x, y)``) checked whole,
        before Keras traces the step (:meth:`batch_labels`): a bad label is named at once, not
        by the step's graph assertion."""
        y = kwargs.get("y", args[0] if args else None)
        if y is not None and not isinstance(y, tf.data.Dataset):
            self.batch_labels(y)

    def _refuse_compiled_loss(self):
        """The models train on their own objective and report its terms: a ``loss`` or metrics
        given to ``compile`` (read back from Keras' public compile config; ``compile`` itself is
        left as Keras', which ``.keras`` files need to recompile on loading) are refused here
        rather than silently ignored."""
        config = self.get_compile_config() or {}
        given = {name: config[name] for name in ("loss", "loss_weights", "metrics",
                                                  "weighted_metrics") if config.get(name)}
        if given:
            raise ValueError(f"{type(self).__name__} trains on its own objective (its "
                             f"train_step) and reports its terms itself: compile it without "
                             f"{', '.join(given)} (got {given}).")

    def evaluate(self, x=None, *args, **kwargs):
        """Keras' ``evaluate``, without sample weights (see :func:`unpack_x_y`)."""
        self._refuse_compiled_loss()
        _refuse_weights(kwargs)
        self._check_array_labels(args, kwargs)
        return super().evaluate(x, *args, **kwargs)

    # Keras traces the steps with AutoGraph, which would rewrite every function they call (with
    # the bounds' and streams', about 1.3 s per bin/train run: docs/performance.md); none has
    # Python control flow on tensors.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        """One optimiser step on :meth:`loss_and_terms` (the negative ELBO for the base model),
        with the step's stateless seed; returns the running means of the reported terms."""
        with tf.GradientTape() as tape:
            loss, terms = self.loss_and_terms(data, self.step_seed())
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return self._update_metrics(loss, terms)

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        """The terms of :meth:`loss_and_terms` on a batch (for ``model.evaluate``), with fresh
        seeds from the model's evaluation seed generator."""
        return self._update_metrics(*self.loss_and_terms(data, self._eval_seeds.next()))

    # ---------------------------------------------------------------------------------- export
    def export_endpoints(self):
        """Named SavedModel signatures: ``{name: (function, input_signature)}``.

        Every function takes and returns tensors only (outputs are dicts of per-example tensors)
        and samples with stateless seeds (int32 [2]), so a loaded model is repeatable.
        """
        x = tf.TensorSpec([None, self.x_dim], tf.float32, name="x")
        z = tf.TensorSpec([None, self.z_dim], tf.float32, name="z")
        seed = tf.TensorSpec([2], tf.int32, name="seed")
        n = tf.TensorSpec([], tf.int32, name="n")
        m = tf.TensorSpec([], tf.int32, name="m")

        def encode(x):
            return dict(zip(("mean", "variance"), self.encoded_moments(x)))

        def decode(z):
            return self.decoded(self.decode(z))

        def negative_elbo(x, seed):
            return dict(zip(self.bound_names, self.negative_elbo(x, seed=seed)))

        def negative_iwae(x, m, seed):
            return dict(zip(("niwae", "kl", "rec"), self.negative_iwae(x, m, seed=seed)))

        def generate(eps, u):
            return {"x": self.generate(eps, u)}

        return {"sample": (lambda n, seed: self.sample(n, seed=seed), [n, seed]),
                "encode": (encode, [x]), "decode": (decode, [z]),
                "negative_elbo": (negative_elbo, [x, seed]),
                "negative_iwae": (negative_iwae, [x, m, seed]),
                "generate": (generate, [tf.TensorSpec([None, self.z_dim], tf.float32, name="eps"),
                                        tf.TensorSpec([None], tf.float32, name="u")])}
