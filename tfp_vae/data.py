"""Images for the models: the evaluation subsets, the test batches and the ``tf.data`` training
streams, for any :class:`~tfp_vae.sources.ImageSet` (:func:`tfp_vae.sources.load` reads them).

Pipelines (see ``docs/reference.md`` sections 5-7):

* :func:`train_dataset` -- shuffled training images, reshuffled every epoch, the last partial batch
  kept (``drop_last=False`` as the reference), and for Bernoulli models **re-binarised with a
  fresh draw every step**. Both the shuffle and the binarisation are stateless functions of
  ``(seed, epoch)`` and ``(seed, step)``, so the stream can be restarted at any step (resuming a
  run replays nothing). :mod:`tfp_vae.tasks` gives the stream of each kind of model.
* :func:`test_subset` -- the evaluation subset: on MNIST the reference's fixed 100 test images;
  on any other data the first ``ceil(100 / K)`` test images of each of the K classes (the first
  100 when unlabelled); statically binarised with ``numpy.random.RandomState(0).binomial`` for
  Bernoulli models (bit-identical to the reference on MNIST).
* :func:`test_batches` -- the whole test split in batches, binarised once with a fixed seed
  (the same bits as binarising it whole).
* :func:`labelled_subset` -- the SSVAE's labelled training images: the reference's 100 on MNIST,
  otherwise N per class by a seeded rule.
"""

import dataclasses
import functools
import math

import numpy as np
import tensorflow as tf

from tfp_vae.sources import (DiskArray, ImageSet, Rows, idx,  # noqa: F401 (re-exported)
                             steps_per_epoch)
from tfp_vae.sources.common import check_pixels
from tfp_vae.errors import DataError  # re-exported: data.DataError
from tfp_vae.registry import check_number

# MNIST, kept here for scripts written against earlier versions.
BUNDLED_DIR = idx.BUNDLED_DIR
MNIST_FILES = idx.MNIST_FILES
Mnist = ImageSet


def load_mnist(data_dir=None, verify_checksums=True, budget=None):
    """MNIST (:func:`tfp_vae.sources.idx.load_mnist`). The ``source`` argument of earlier
    versions is gone: TFDS is ``tfp_vae.sources.load("tfds:mnist")``."""
    if not isinstance(verify_checksums, bool):
        raise TypeError(f"load_mnist(data_dir, verify_checksums) takes no source "
                        f"({verify_checksums!r}) any more; for TFDS use "
                        f"tfp_vae.sources.load('tfds:mnist').")
    return idx.load_mnist(data_dir, verify_checksums, budget)

# Positions within each digit's examples, in file order (docs/reference.md section 6). Row d
# lists the picks for digit d; duplicates (test 5: 128, train 4: 2176) are kept as in the reference.
TEST_SUBSET_POSITIONS = (
    (684, 559, 629, 192, 835, 763, 707, 359, 9, 723),
    (277, 599, 1094, 600, 314, 705, 551, 87, 174, 849),
    (537, 845, 72, 777, 115, 976, 755, 448, 850, 99),
    (984, 177, 755, 797, 659, 147, 910, 423, 288, 961),
    (265, 697, 639, 544, 543, 714, 244, 151, 675, 510),
    (459, 882, 183, 28, 802, 128, 128, 53, 550, 488),
    (756, 273, 335, 388, 617, 42, 442, 543, 888, 257),
    (57, 291, 779, 430, 91, 398, 611, 908, 633, 84),
    (203, 324, 774, 964, 47, 639, 131, 972, 868, 180),
    (1000, 846, 143, 660, 227, 954, 791, 719, 909, 373),
)
TRAIN_SUBSET_POSITIONS = (
    (2732, 2607, 1653, 3264, 4931, 4859, 5827, 1033, 4373, 5874),
    (5924, 3468, 6458, 705, 2599, 2135, 2222, 2897, 1701, 537),
    (2893, 2163, 5072, 4851, 2046, 1871, 2496, 99, 2008, 755),
    (797, 659, 3219, 423, 3337, 2745, 4735, 544, 714, 2292),
    (151, 2723, 3531, 2930, 1207, 802, 2176, 2176, 1956, 3622),
    (3560, 756, 4369, 4484, 1641, 3114, 4984, 4353, 4071, 4009),
    (2105, 3942, 3191, 430, 4187, 2446, 2659, 1589, 2956, 2681),
    (4180, 2251, 4420, 4870, 1071, 4735, 6132, 5251, 5068, 1204),
    (3918, 1167, 1684, 3299, 2767, 2957, 4469, 560, 5425, 1605),
    (5795, 1472, 3678, 256, 3762, 5412, 1954, 816, 2435, 1634),
)

# Rows of a memory-mapped array checked at a time (bounded memory for files of any size).
_CHECK_ROWS = 8192
# Salt that separates the binarisation stream from every other use of the run's seed.
_BINARIZE_SALT = 0x5EED
# Training arrays up to this size are copied into the tf.data graph as a constant (fastest).
_MAX_CONSTANT_BYTES = 256 << 20


def to_unit_interval(images):
    """Images -> float32 in [0, 1], flattened to (N, D): uint8 0..255 as x / 255 in float32 (as
    torchvision's ToTensor); float images (already in [0, 1]) as they are."""
    images = images[:] if isinstance(images, DiskArray) else np.asarray(images)
    images = _pixels(images, "images")
    flat = images.reshape(len(images), -1)
    if flat.dtype == np.uint8:
        return flat.astype(np.float32) / np.float32(255)
    return flat.astype(np.float32)


def as_pixels(images, where):
    """In-memory images as the streams take them: bool images and integer images of 0s and 1s
    (binary data) as float32 0/1; other integer types than uint8 are refused, with the fix
    (8-bit data as uint8; otherwise floats in [0, 1]). uint8 and float images are returned as
    they are, for :func:`~tfp_vae.sources.common.check_pixels`."""
    if images.dtype == np.bool_:
        return images.astype(np.float32)
    if images.dtype.kind in "iu" and images.dtype != np.uint8:
        low, high = (int(images.min()), int(images.max())) if images.size else (0, 0)
        if 0 <= low and high <= 1:
            return images.astype(np.float32)
        raise DataError(f"{where}: {images.dtype.name} images with values in [{low}, {high}]: "
                        f"pass 8-bit images as uint8 (images.astype(np.uint8)), or floats in "
                        f"[0, 1] (divide by the value that is white in your data).")
    return images


def _pixels(images, where):
    """In-memory images, binary ones as floats (:func:`as_pixels`), checked by the sources' rule."""
    return check_pixels(as_pixels(images, where), where)


def static_binarize(x, seed=0):
    """The reference's ``static_binarize``: ``numpy.random.RandomState(seed).binomial(1, x)``."""
    return np.random.RandomState(seed).binomial(1, x).astype(np.float32)


def subset_indices(labels, positions):
    """Indices of the reference subsets: for digit d, its ``positions[d]``-th examples in file
    order."""
    return np.concatenate([np.flatnonzero(labels == d)[list(p)] for d, p in enumerate(positions)])


# The evaluation subset of data other than MNIST holds about this many images.
SUBSET_SIZE = 100


def subset_rule(labels, num_classes, size=SUBSET_SIZE):
    """Indices of the evaluation subset of any dataset: the first ``ceil(size / K)`` test images
    of each of the K classes in file order, class by class (a class with fewer gives all it has);
    the first ``size`` images when ``labels`` is None."""
    if labels is None or not num_classes:
        return np.arange(min(size, len(labels) if labels is not None else size))
    per_class = math.ceil(size / num_classes)
    return np.concatenate([np.flatnonzero(labels == c)[:per_class]  # classes present, in order
                           for c in np.unique(labels)] or [np.zeros(0, np.int64)])


def test_subset(dataset, binarized=True):
    """The evaluation subset ``(images (n, D) float32, labels or None)``: on MNIST the reference's
    100 test images; otherwise :func:`subset_rule`. Bernoulli models (``binarized``) get it
    statically binarised (``numpy.random.RandomState(0)``, bit-identical to the reference)."""
    if dataset.reference:
        idx_ = subset_indices(dataset.test_labels, TEST_SUBSET_POSITIONS)
    elif dataset.test_labels is None:
        idx_ = subset_rule(None, 0, min(SUBSET_SIZE, len(dataset.test_images)))
    else:
        idx_ = subset_rule(dataset.test_labels, dataset.num_classes)
    x = to_unit_interval(dataset.test_images[idx_])
    labels = None if dataset.test_labels is None else dataset.test_labels[idx_]
    return (static_binarize(x) if binarized else x), labels


def labelled_subset(dataset, per_class=10):
    """The SSVAE's labelled training images (continuous, [0, 1]) and their labels.

    On MNIST with 10 per class: the reference's 100 (docs/reference.md section 6). Otherwise,
    for each class c in order, ``per_class`` of its training images drawn without replacement with
    ``numpy.random.default_rng([0, c])`` (the same for every run on the same data).

    Raises:
      DataError: the data has no labels, or a class has fewer than ``per_class`` images.
    """
    per_class = check_number("labels_per_class", per_class, int, minimum=1, error=DataError)
    if dataset.train_labels is None:
        raise DataError(f"{dataset.name} has no labels; the SSVAE needs labelled training images.")
    if dataset.reference and per_class == 10 and not dataset.held_out:
        idx_ = subset_indices(dataset.train_labels, TRAIN_SUBSET_POSITIONS)
    else:
        picks = []
        for c in range(dataset.num_classes):
            members = np.flatnonzero(dataset.train_labels == c)
            if len(members) < per_class:
                raise DataError(f"class {dataset.class_name(c)!r} (label {c}) of {dataset.name} "
                                f"has {len(members)} training images, fewer than "
                                f"--labels_per_class={per_class}; lower --labels_per_class or "
                                f"add images of that class.")
            picks.append(members[np.random.default_rng([0, c]).choice(len(members), per_class,
                                                                         replace=False)])
        idx_ = np.concatenate(picks)
    return to_unit_interval(dataset.train_images[idx_]), dataset.train_labels[idx_]


def test_batches(dataset, binarized=True, batch_size=500, seed=0):
    """The test split as ``(images (b, D) float32, labels (b,) int32 or None)`` batches in file
    order; Bernoulli models (``binarized``) get it binarised once with
    ``numpy.random.RandomState(seed)``, batch after batch from one generator, which draws the same
    bits as binarising the whole split at once."""
    rng = np.random.RandomState(seed)
    labels = dataset.test_labels
    for start in range(0, len(dataset.test_images), batch_size):
        x = to_unit_interval(dataset.test_images[start:start + batch_size])
        if binarized:
            x = rng.binomial(1, x).astype(np.float32)
        yield x, None if labels is None else labels[start:start + batch_size].astype(np.int32)


def validation_set(dataset, binarized=True, size=1000):
    """The data of the validation curve and its labels: the validation split when the dataset
    has one (:func:`hold_out`), else the first ``size`` images of the test split (the first
    batch of :func:`test_batches`); binarised once with seed 0 for Bernoulli models."""
    if dataset.validation_images is not None:
        x = to_unit_interval(dataset.validation_images)
        labels = dataset.validation_labels
        return (static_binarize(x) if binarized else x), \
            None if labels is None else labels.astype(np.int32)
    return next(test_batches(dataset, binarized, batch_size=size))


# The validation split's rule: the same images on every run of the same data, whatever the seed.
VALIDATION_SEED = 0


def hold_out(dataset, count):
    """``dataset`` with ``count`` of its training images moved to a validation split (the papers'
    50,000 / 10,000 on MNIST): those at the first ``count`` places of
    ``numpy.random.default_rng(0).permutation(N)``, in file order; the training split keeps the
    others, in file order (a :class:`~tfp_vae.sources.Rows` view when the images stay on disk).

    Raises:
      DataError: ``count`` leaves no training image.
    """
    n = len(dataset.train_images)
    count = check_number("validation", count, int, minimum=1, error=DataError)
    if not 0 < count < n:
        raise DataError(f"--validation={count} must hold out fewer images than the "
                        f"{n:,} training images of {dataset.name}.")
    order = np.random.default_rng(VALIDATION_SEED).permutation(n)
    held, kept = np.sort(order[:count]), np.sort(order[count:])
    images = dataset.train_images
    train = images[kept] if isinstance(images, np.ndarray) else Rows(images, kept)
    labels = dataset.train_labels
    return dataclasses.replace(
        dataset, train_images=train, validation_images=np.asarray(images[held]),
        train_labels=None if labels is None else labels[kept],
        validation_labels=None if labels is None else labels[held])


def full_test_set(dataset, seed=0, binarized=True):
    """The whole test split of :func:`test_batches` as one array, and its labels."""
    parts = list(test_batches(dataset, binarized, seed=seed))
    x = np.concatenate([p[0] for p in parts])
    return x, None if dataset.test_labels is None else np.concatenate([p[1] for p in parts])


def binarize(x, seed):
    """A Bernoulli(x) draw of a float tensor ``x`` in [0, 1] with a stateless ``seed``."""
    u = tf.random.stateless_uniform(tf.shape(x), seed=seed, dtype=x.dtype)
    return tf.cast(u < x, x.dtype)


def _checked_stream(images, batch_size, labels):
    """``(images, batch_size)`` of a training stream, checked: images (N, ...) with N > 0 of
    uint8 or float pixels in [0, 1], or binary images (:func:`as_pixels`; another integer type,
    or float pixels in 0..255, would be binarised as all ones), a whole batch size and one label
    per image; else DataError. Images of a :class:`~tfp_vae.sources.DiskArray` are range-checked
    as their source reads them (tfp_vae.sources), not here, where it would read them whole; a
    NumPy memmap is checked a block of rows at a time."""
    where = "the training images"
    if isinstance(images, np.memmap):  # a file mapped by NumPy: checked a block at a time
        for start in range(0, len(images), _CHECK_ROWS):
            _pixels(images[start:start + _CHECK_ROWS], where)
    elif not isinstance(images, (DiskArray, Rows)):
        images = _pixels(np.asarray(images), where)
    else:
        check_pixels(images[:0], where)
    if images.ndim < 2:
        raise DataError(f"training images must be an array (N, D) or (N, H, W, C), got shape "
                        f"{images.shape}.")
    if len(images) == 0:
        raise DataError("there are no training images (an array of length 0).")
    batch_size = check_number("batch_size", batch_size, int, minimum=1, error=DataError,
                              flag=False)
    if labels is not None and len(labels) != len(images):
        raise DataError(f"{len(labels)} labels for {len(images)} training images: give one "
                        f"label per image.")
    return images, batch_size


def train_dataset(images, batch_size, seed, start_step=0, binarized=True, labels=None):
    """The training stream, from step ``start_step`` on (infinite).

    Each epoch is a fresh permutation (a stateless function of ``(seed, epoch)``), cut into
    batches of ``batch_size`` with the last partial batch kept, exactly as the reference's
    ``DataLoader(shuffle=True, drop_last=False)``. With ``binarized`` every batch is re-binarised
    with a fresh Bernoulli draw keyed by ``(seed, step)`` (dynamic binarisation).

    Args:
      images: uint8 array (N, D) or (N, H, W, C) in 0..255, or float array in [0, 1] (NumPy or a
        :class:`~tfp_vae.sources.DiskArray`); batches are flattened to (b, D).
      batch_size: examples per step.
      seed: int, the run's seed.
      start_step: the first step to produce (resuming a run continues the same stream).
      binarized: apply dynamic binarisation.
      labels: optional (N,) labels; then the stream yields ``(images, labels)`` pairs.
    Returns:
      A ``tf.data.Dataset`` of float32 batches (b, D) (or pairs with int32 labels).
    """
    images, batch_size = _checked_stream(images, batch_size, labels)
    n, dim = images.shape[0], int(np.prod(images.shape[1:]))
    per_epoch = steps_per_epoch(n, batch_size)
    first_epoch, offset = divmod(int(start_step), per_epoch)
    label_table = None if labels is None else tf.constant(np.asarray(labels, np.int32))
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    if isinstance(images, np.ndarray) and images.nbytes <= _MAX_CONSTANT_BYTES:
        table = tf.constant(images.reshape(n, dim))
        gather = functools.partial(tf.gather, table)
    else:
        # A large array (SVHN's extra is 1.6 GB) stays where it is, read once from its file, and
        # data above the memory budget stays on disk (a DiskArray reads just the batch's rows):
        # each batch is gathered from it by index, instead of copying it into a tf.constant.
        def gather(idx):
            rows = tf.numpy_function(lambda i: images[i].reshape(len(i), dim), [idx],
                                     images.dtype, stateful=False)
            return tf.ensure_shape(rows, [None, dim])

    # Not rewritten by AutoGraph (tf.data's default): no Python control flow on tensors here.
    @tf.autograph.experimental.do_not_convert
    def epoch_batches(epoch):
        keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys)).batch(batch_size)

    @tf.autograph.experimental.do_not_convert
    def load(step, idx):
        x = tf.cast(gather(idx), tf.float32) / scale  # as to_unit_interval
        if binarized:
            x = binarize(x, tf.stack([tf.cast(seed, tf.int64) + _BINARIZE_SALT, step]))
        return x if label_table is None else (x, tf.gather(label_table, idx))

    ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(epoch_batches)
    ds = ds.skip(offset).enumerate(start=int(start_step))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_STREAM_OPTIONS)


# tf.data's autotuning thread off for the training streams: with it, destroying the stream's
# iterator after a `fit` sometimes waited 2-16 s inside Python's garbage collection (5 of 15
# bin/train runs of the SSVAE; 0 of 6 without it, at the same speed per step), which landed at
# the end of runs and at random points of the test suite. The batches are the same either way.
_STREAM_OPTIONS = tf.data.Options()
_STREAM_OPTIONS.autotune.enabled = False


def eval_dataset(x, batch_size=1000):
    """A finite, unshuffled dataset of ``x`` for evaluation."""
    return tf.data.Dataset.from_tensor_slices(np.asarray(x, np.float32)).batch(batch_size)


def check_images(x, dim=784, name="images"):
    """Validates a float array of images for the Bernoulli models; returns it as float32.

    Raises DataError naming the problem: wrong shape, NaN, or values outside [0, 1].
    """
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[1] * x.shape[2] == dim:
        x = x.reshape(x.shape[0], dim)
    if x.ndim != 2 or x.shape[1] != dim:
        raise DataError(f"{name} must have shape (N, {dim}) (or (N, 28, 28)), got {x.shape}.")
    x = x.astype(np.float32)
    if np.isnan(x).any():
        raise DataError(f"{name} contain NaN values; clean the data before use.")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise DataError(f"{name} must lie in [0, 1], got values in [{x.min()}, {x.max()}]; "
                        f"divide uint8 images by 255.")
    return x


def semisupervised_dataset(images, labels, labelled_x, labelled_y, batch_size, seed, start_step=0,
                           binarized=True):
    """The SSVAE stream: every step one unlabelled batch and *all* labelled examples, both
    re-binarised afresh for Bernoulli models (docs/reference.md section 5).

    Yields dicts ``{"x", "y", "x_labelled", "y_labelled"}``; ``y`` holds the true labels of the
    unlabelled batch, used only to report training accuracy (never in the loss).
    """
    unlabelled = train_dataset(images, batch_size, seed, start_step, binarized, labels=labels)
    if len(labelled_x) == 0 or len(labelled_x) != len(labelled_y):
        raise DataError(f"the SSVAE needs labelled images, one label each: got "
                        f"{len(labelled_x)} images and {len(labelled_y)} labels.")
    xl = tf.constant(to_unit_interval(labelled_x))  # uint8 scaled, as the unlabelled stream
    yl = tf.constant(np.asarray(labelled_y, np.int32))
    no_autograph = tf.autograph.experimental.do_not_convert  # as in train_dataset
    labelled = tf.data.Dataset.range(int(start_step), np.iinfo(np.int64).max).map(no_autograph(
        lambda step: binarize(xl, tf.stack([tf.cast(seed, tf.int64) + 2 * _BINARIZE_SALT, step]))
        if binarized else xl))
    return tf.data.Dataset.zip(unlabelled, labelled).map(no_autograph(
        lambda u, xl_step: {"x": u[0], "y": u[1], "x_labelled": xl_step, "y_labelled": yl})
    ).with_options(_STREAM_OPTIONS)
