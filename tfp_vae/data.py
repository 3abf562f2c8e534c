"""MNIST for the CS236 HW2 protocol: verified IDX files, the reference subsets, tf.data pipelines.

The four MNIST IDX files ship inside the package (``tfp_vae/mnist``) so that everything works
offline. Every file is checked on load: the gzip stream must be complete, the IDX header must
match the expected shape, and (for the canonical files) the SHA-256 of the decompressed bytes
must match. A problem raises :class:`DataError` with a message that names the file and the fix.

Pipelines (see ``REFERENCE.md`` sections 5-7):

* :func:`train_dataset` -- shuffled training images, reshuffled every epoch, the last partial batch
  kept (``drop_last=False`` as the reference), **re-binarised with a fresh Bernoulli draw every
  step**. Both the shuffle and the binarisation are stateless functions of ``(seed, epoch)`` and
  ``(seed, step)``, so the stream can be restarted at any step (resuming a run replays nothing).
* :func:`test_subset` -- the reference's fixed 100-image test subset, statically binarised with
  ``numpy.random.RandomState(0).binomial`` (bit-identical to the reference).
* :func:`full_test_set` -- the 10k test images binarised once with a fixed seed.
* :func:`labelled_subset` -- the reference's 100-label training subset (for the SSVAE).
"""

import dataclasses
import functools
import gzip
import hashlib
import pathlib
import zlib

import numpy as np
import tensorflow as tf

from tfp_vae.errors import DataError  # re-exported: data.DataError

BUNDLED_DIR = pathlib.Path(__file__).resolve().parent / "mnist"

# name -> (file name, IDX shape, SHA-256 of the decompressed bytes of the canonical file).
MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", (60000, 28, 28),
                     "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": ("train-labels-idx1-ubyte.gz", (60000,),
                     "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test_images": ("t10k-images-idx3-ubyte.gz", (10000, 28, 28),
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", (10000,),
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}

# Positions within each digit's examples, in file order (REFERENCE.md section 6). Row d lists the
# picks for digit d; duplicates (test 5: 128, train 4: 2176) are kept as in the reference.
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

_IDX_DTYPES = {0x08: np.uint8}
# Salt that separates the binarisation stream from every other use of the run's seed.
_BINARIZE_SALT = 0x5EED
# Training arrays up to this size are copied into the tf.data graph as a constant (fastest).
_MAX_CONSTANT_BYTES = 256 << 20




@dataclasses.dataclass(frozen=True)
class ImageSet:
    """A labelled image dataset as uint8 arrays.

    Images are (N, D) or (N, height, width, channels) in 0..255 -- possibly a view of the memory
    a file was read into (SVHN's ``extra`` is never copied) -- and labels (N,) in 0..9.
    ``image_shape`` is the (height, width, channels) of one image.
    """
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    image_shape: tuple = (28, 28, 1)
    name: str = "mnist"


Mnist = ImageSet  # MNIST: images (N, 784)


def read_idx(path, shape=None, sha256=None):
    """Reads one gzip-compressed IDX file into a NumPy array, checking it on the way.

    Args:
      path: the ``.gz`` file.
      shape: the expected array shape, or None to accept any.
      sha256: the expected SHA-256 of the decompressed bytes, or None to skip that check.
    Raises:
      DataError: the file is missing, truncated, corrupt, or not of the expected shape.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"MNIST file {path} is missing. Put the four MNIST IDX .gz files in "
                        f"{path.parent}, or leave --data_dir unset to use the bundled copy.")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"MNIST file {path} is truncated or corrupt ({e}). Replace it with a fresh "
                        f"copy (the bundled one is in {BUNDLED_DIR}).") from None
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise DataError(f"MNIST file {path} does not have the expected content (SHA-256 of the "
                        f"decompressed bytes differs). Replace it with the canonical file, e.g. "
                        f"the bundled copy in {BUNDLED_DIR}.")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: its IDX header is incomplete.")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if shape is not None and dims != tuple(shape):
        raise DataError(f"{path} holds an array of shape {dims}, expected {tuple(shape)}.")
    size = int(np.prod(dims))
    if len(raw) != header + size:
        raise DataError(f"{path} is truncated or has trailing bytes: {len(raw) - header} data "
                        f"bytes for shape {dims}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(data_dir=None, source="files", verify_checksums=True):
    """Loads MNIST as uint8 arrays.

    Args:
      data_dir: folder holding the four IDX ``.gz`` files (``source='files'``; None = the bundled
        copy), or the TFDS data folder (``source='tfds'``).
      source: ``'files'`` for IDX files, ``'tfds'`` for ``tfds.load('mnist')`` (needs internet the
        first time, or a prepared TFDS folder).
      verify_checksums: check the SHA-256 of every IDX file against the canonical MNIST.
    Returns:
      A :class:`Mnist`.
    """
    if source == "tfds":
        return _load_mnist_tfds(data_dir)
    if source != "files":
        raise DataError(f"unknown MNIST source {source!r}: use 'files' or 'tfds'.")
    folder = BUNDLED_DIR if data_dir is None else pathlib.Path(data_dir)
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist. Create it and put the four MNIST "
                        f"IDX .gz files in it, or leave --data_dir unset to use the bundled copy.")
    arrays = {}
    for key, (name, shape, digest) in MNIST_FILES.items():
        arrays[key] = read_idx(folder / name, shape, digest if verify_checksums else None)
    for split in ("train", "test"):
        if arrays[f"{split}_labels"].max() > 9:
            raise DataError(f"{split} labels in {folder} are outside 0..9.")
    return Mnist(train_images=arrays["train_images"].reshape(-1, 784),
                 train_labels=arrays["train_labels"],
                 test_images=arrays["test_images"].reshape(-1, 784),
                 test_labels=arrays["test_labels"])


def _load_mnist_tfds(data_dir):
    import tensorflow_datasets as tfds  # Imported here: TFDS is slow to import and optional.

    def arrays(split):
        ds = tfds.load("mnist", split=split, as_supervised=True, data_dir=data_dir)
        batches = list(tfds.as_numpy(ds.batch(10_000)))
        x = np.concatenate([b[0] for b in batches]).astype(np.uint8).reshape(-1, 784)
        return x, np.concatenate([b[1] for b in batches]).astype(np.uint8)
    try:
        (xtr, ytr), (xte, yte) = arrays("train"), arrays("test")
    except Exception as e:  # TFDS raises many types for "cannot download / not prepared".
        raise DataError(f"tfds.load('mnist') failed ({type(e).__name__}: {e}). It needs internet "
                        f"access the first time; offline, use the bundled copy (--data=files).") \
            from None
    return Mnist(xtr, ytr, xte, yte)


def to_unit_interval(images):
    """uint8 0..255 -> float32 in [0, 1] (x / 255 in float32, as torchvision's ToTensor),
    flattened to (N, D)."""
    images = np.asarray(images)
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255)


def static_binarize(x, seed=0):
    """The reference's ``static_binarize``: ``numpy.random.RandomState(seed).binomial(1, x)``."""
    return np.random.RandomState(seed).binomial(1, x).astype(np.float32)


def subset_indices(labels, positions):
    """Indices of the reference subsets: for digit d, its ``positions[d]``-th examples in file order."""
    return np.concatenate([np.flatnonzero(labels == d)[list(p)] for d, p in enumerate(positions)])


def test_subset(mnist):
    """The reference evaluation set: 100 test images, statically binarised (seed 0), and labels."""
    idx = subset_indices(mnist.test_labels, TEST_SUBSET_POSITIONS)
    return static_binarize(to_unit_interval(mnist.test_images[idx])), mnist.test_labels[idx]


def labelled_subset(mnist):
    """The SSVAE's 100 labelled training images (continuous, [0, 1]) and their labels."""
    idx = subset_indices(mnist.train_labels, TRAIN_SUBSET_POSITIONS)
    return to_unit_interval(mnist.train_images[idx]), mnist.train_labels[idx]


def full_test_set(mnist, seed=0):
    """All 10k test images binarised once (``static_binarize`` with ``seed``), and labels."""
    return static_binarize(to_unit_interval(mnist.test_images), seed), mnist.test_labels


def steps_per_epoch(num_examples, batch_size):
    """Steps in one pass with the last partial batch kept (the reference's ``drop_last=False``)."""
    return -(-num_examples // batch_size)


def binarize(x, seed):
    """A Bernoulli(x) draw of a float tensor ``x`` in [0, 1] with a stateless ``seed``."""
    u = tf.random.stateless_uniform(tf.shape(x), seed=seed, dtype=x.dtype)
    return tf.cast(u < x, x.dtype)


def train_dataset(images, batch_size, seed, start_step=0, binarized=True, labels=None):
    """The training stream, from step ``start_step`` on (infinite).

    Each epoch is a fresh permutation (a stateless function of ``(seed, epoch)``), cut into
    batches of ``batch_size`` with the last partial batch kept, exactly as the reference's
    ``DataLoader(shuffle=True, drop_last=False)``. With ``binarized`` every batch is re-binarised
    with a fresh Bernoulli draw keyed by ``(seed, step)`` (dynamic binarisation).

    Args:
      images: uint8 array (N, D) or (N, H, W, C) in 0..255, or float array in [0, 1]; batches
        are flattened to (b, D).
      batch_size: examples per step.
      seed: int, the run's seed.
      start_step: the first step to produce (resuming a run continues the same stream).
      binarized: apply dynamic binarisation.
      labels: optional (N,) labels; then the stream yields ``(images, labels)`` pairs.
    Returns:
      A ``tf.data.Dataset`` of float32 batches (b, D) (or pairs with int32 labels).
    """
    images = np.asarray(images)
    if images.ndim < 2:
        raise DataError(f"training images must be an array (N, D) or (N, H, W, C), got shape "
                        f"{images.shape}.")
    n, dim = images.shape[0], int(np.prod(images.shape[1:]))
    if batch_size <= 0:
        raise DataError(f"batch_size must be positive, got {batch_size}.")
    per_epoch = steps_per_epoch(n, batch_size)
    first_epoch, offset = divmod(int(start_step), per_epoch)
    label_table = None if labels is None else tf.constant(np.asarray(labels, np.int32))
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    if images.nbytes <= _MAX_CONSTANT_BYTES:
        table = tf.constant(images.reshape(n, dim))
        gather = functools.partial(tf.gather, table)
    else:
        # A large array (SVHN's extra is 1.6 GB) stays where it is, read once from its file:
        # each batch is gathered from it by index, instead of copying it into a tf.constant.
        def gather(idx):
            rows = tf.numpy_function(lambda i: images[i].reshape(len(i), dim), [idx],
                                     images.dtype, stateful=False)
            return tf.ensure_shape(rows, [None, dim])

    def epoch_batches(epoch):
        keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys)).batch(batch_size)

    def load(step, idx):
        x = tf.cast(gather(idx), tf.float32) / scale  # as to_unit_interval
        if binarized:
            x = binarize(x, tf.stack([tf.cast(seed, tf.int64) + _BINARIZE_SALT, step]))
        return x if label_table is None else (x, tf.gather(label_table, idx))

    ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(epoch_batches)
    ds = ds.skip(offset).enumerate(start=int(start_step))
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


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



def semisupervised_dataset(images, labels, labelled_x, labelled_y, batch_size, seed, start_step=0):
    """The SSVAE stream: every step one unlabelled batch and *all* labelled examples, both
    re-binarised afresh (REFERENCE.md section 5).

    Yields dicts ``{"x", "y", "x_labelled", "y_labelled"}``; ``y`` holds the true labels of the
    unlabelled batch, used only to report training accuracy (never in the loss).
    """
    unlabelled = train_dataset(images, batch_size, seed, start_step, labels=labels)
    xl = tf.constant(np.asarray(labelled_x, np.float32))
    yl = tf.constant(np.asarray(labelled_y, np.int32))
    labelled = tf.data.Dataset.range(int(start_step), np.iinfo(np.int64).max).map(
        lambda step: binarize(xl, tf.stack([tf.cast(seed, tf.int64) + 2 * _BINARIZE_SALT, step])))
    return tf.data.Dataset.zip(unlabelled, labelled).map(
        lambda u, xl_step: {"x": u[0], "y": u[1], "x_labelled": xl_step, "y_labelled": yl})
