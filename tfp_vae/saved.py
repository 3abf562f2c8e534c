"""A loaded SavedModel behind the interface of a Keras model, so that the evaluation, the
pictures and the tools treat an export and a model in memory alike.

Needs only TensorFlow (no Keras, no TFP, no model code): the SavedModel carries everything.
"""

import numpy as np
import tensorflow as tf

from tfp_vae import export, images, labels, registry
from tfp_vae.seeds import as_seed


class SavedVAE:
    """The SavedModel at ``path`` (see :func:`tfp_vae.export.load`), with the methods of
    :class:`tfp_vae.models.BaseVAE` that an export can offer: the bounds, ``classify``,
    ``sample_labels``, ``sample_grid``, ``embed`` and ``reconstruct``.

    Attributes:
      kind, metadata, config: what its metadata records.
      image_shape, x_dim, num_classes, likelihood, binarized, picture_keys, conditional: as a
        Keras model's.
    """

    def __init__(self, path):
        self.path = path
        self.loaded, self.metadata = export.load(path)
        self.kind = self.metadata["kind"]
        self.config = self.metadata.get("config") or {}
        self.image_shape = tuple(self.metadata["image_shape"])
        self.x_dim = int(np.prod(self.image_shape))
        self.likelihood = export.likelihood(self.metadata)
        self.binarized = self.likelihood == "bernoulli"
        self.picture_keys = export.picture_keys(self.metadata)
        self.conditional = "class_grid" in self.metadata["signatures"]
        self.num_classes = export.num_classes(self.metadata) if self.conditional else 0
        self.task = registry.get(self.kind).task
        self.seed = int(self.config.get("seed", 0))

    def has(self, signature):
        """Whether the export has the function ``signature``."""
        return signature in self.metadata["signatures"]

    def _flat(self, x):
        """Images as the signatures take them, float32 (B, x_dim) in [0, 1], from float images
        flat or (B, H, W, C); uint8 images are refused (a Keras model binarises them afresh from
        its seed, which a SavedModel's signature cannot: pass float pixels, binarised if the
        model is Bernoulli, as tfp_vae.data.test_batches gives them)."""
        x = tf.convert_to_tensor(x)
        if not x.dtype.is_floating:
            raise ValueError(f"the SavedModel takes float images in [0, 1], got {x.dtype.name}: "
                             f"divide uint8 pixels by 255 (and binarise them for a Bernoulli "
                             f"model).")
        layouts = [(self.x_dim,), self.image_shape] + \
            ([self.image_shape[:2]] if self.image_shape[2] == 1 else [])
        if tuple(x.shape[1:]) not in layouts:
            raise ValueError(f"the SavedModel takes a batch of images of shape (batch, "
                             f"{self.x_dim}) or (batch, {', '.join(map(str, self.image_shape))}), "
                             f"got {tuple(x.shape)}.")
        return tf.reshape(tf.cast(x, tf.float32), [-1, self.x_dim])

    def _labelled(self, y):
        return {"y": labels.indices(y, self.num_classes)} if y is not None else {}

    def negative_elbo(self, x, y=None, seed=None):
        """``(nelbo, its parts...)``: the ``negative_elbo`` signature (labels only for the models
        of -log p(x | y))."""
        out = self.loaded.negative_elbo(x=self._flat(x), seed=_seed(seed),
                                        **self._bound_labels(y))
        return (out["nelbo"],) + tuple(out[k] for k in sorted(out) if k != "nelbo")

    def negative_iwae(self, x, num_samples, y=None, seed=None):
        """``(niwae, kl, rec)``: the ``negative_iwae`` signature."""
        out = self.loaded.negative_iwae(x=self._flat(x),
                                        m=tf.convert_to_tensor(num_samples, tf.int32),
                                        seed=_seed(seed), **self._bound_labels(y))
        return (out["niwae"],) + tuple(out[k] for k in sorted(out) if k != "niwae")

    def _bound_labels(self, y):
        # Only the FSVAE's bounds take labels (the SSVAE's sum the label out).
        return self._labelled(y) if self.task == "supervised" else {}

    def classify(self, x):
        """Class probabilities q(y | x) (the SSVAE)."""
        return self.loaded.classify(x=self._flat(x))["probs"]

    def sample_labels(self, y, seed=None):
        """One draw per label of ``y`` (the FSVAE's ``sample`` signature)."""
        return self.loaded.sample(y=labels.indices(y, self.num_classes), seed=_seed(seed))

    def embed(self, x, y=None):
        """E[z | x (, y)]: the ``encode`` signature's mean."""
        return self.loaded.encode(x=self._flat(x),
                                  **(self._labelled(y) if self.conditional else {}))["mean"]

    def reconstruct(self, x, y=None):
        """The mean picture of p(x | z = E[z | x] (, y))."""
        labels = self._labelled(y) if self.conditional else {}
        z = self.loaded.encode(x=self._flat(x), **labels)["mean"]
        return self.loaded.decode(z=z, **labels)[self.picture_keys[1]]

    def sample_grid(self, seed, n=None, means=False):
        """``(pictures, rows, cols)``: for the conditional models one row per class and
        ``n // classes`` columns, each column one shared z (``n`` None: 20 columns of at most 20
        classes, :func:`tfp_vae.images.shown_classes`, the model's own picture); else ``n``
        (200) draws in the grid of :func:`tfp_vae.images.grid_shape`. ``means``: the mean
        pictures instead of draws."""
        seed = as_seed(seed)  # refused, not wrapped, beyond an int32
        key = self.picture_keys[1] if means else self.picture_keys[0]
        if self.conditional and n is None:
            out = self.loaded.class_grid(columns=tf.constant(20), seed=seed)
            return images.class_rows(out[key].numpy(), self.num_classes, 20)
        n = n or 200
        if self.conditional:
            if n % self.num_classes:
                raise ValueError(f"must be a multiple of {self.num_classes} for the {self.kind} "
                                 f"(one row per class), got {n}.")
            out = self.loaded.class_grid(columns=tf.constant(n // self.num_classes), seed=seed)
            rows, cols = self.num_classes, n // self.num_classes
        else:
            out = self.loaded.sample(n=tf.constant(n, tf.int32), seed=seed)
            rows, cols = images.grid_shape(n)
        return out[key], rows, cols

    def component_grid(self, components, n, seed, means=False):
        """``(pictures, rows, cols)``: ``n`` draws from each of the prior's ``components`` (a
        GMVAE's mixture components, a VampPrior's pseudo-inputs), one row per component.
        ``means``: the mean pictures instead of draws. ValueError names a wrong component."""
        if not self.has("sample_components"):
            raise ValueError(f"needs a GMVAE or VampPrior; {self.path} holds a {self.kind}.")
        name = "pseudo_inputs" if "pseudo_inputs" in self.config else "k"
        k = int(self.config[name])
        try:
            chosen = [int(c) for c in components]
        except ValueError:
            raise ValueError(f"must be integers, got {list(components)}.") from None
        if any(not 0 <= c < k for c in chosen):
            raise ValueError(f"must lie in 0..{k - 1} (the model has {name}={k}).")
        out = self.loaded.sample_components(components=tf.constant(chosen, tf.int32),
                                            n=tf.constant(n, tf.int32),
                                            seed=as_seed(seed))
        return out[self.picture_keys[1] if means else self.picture_keys[0]], len(chosen), n

    def pseudo_input_pictures(self, count=100):
        """The first ``count`` learned pseudo-inputs of a VampPrior, or None for other kinds."""
        if not self.has("pseudo_inputs"):
            return None
        k = int(self.config["pseudo_inputs"])
        return self.loaded.pseudo_inputs(components=tf.range(min(k, count)))["x"]


def _seed(seed):
    """A signature's seed: as the Keras models take it (:func:`tfp_vae.seeds.as_seed`), or None
    for ``(0, 0)`` (a SavedModel keeps no state to draw fresh seeds from)."""
    return tf.zeros([2], tf.int32) if seed is None else as_seed(seed)
