"""SVHN (cropped digits) for the FSVAE: the official ``.mat`` files or TFDS ``svhn_cropped``.

The official files (http://ufldl.stanford.edu/housenumbers/) are MATLAB files with ``X``, a
(32, 32, 3, N) uint8 array, and ``y``, an (N, 1) array of labels 1..10 where 10 means digit 0
(REFERENCE.md section 9). They are read with ``scipy.io.loadmat`` into one buffer, and the images
are returned as an (N, 32, 32, 3) *view* of it (MATLAB stores arrays column-major, so each image
is contiguous and the transposed view costs nothing): ``extra_32x32.mat`` (531,131 images) takes
its 1.63 GB of uint8 once, never twice. Training batches are gathered from it and scaled to
[0, 1] one batch at a time (see :func:`tfp_vae.data.train_dataset`).
"""

import os
import pathlib
import zlib

import numpy as np

from tfp_vae.data import DataError, ImageSet

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
URL = "http://ufldl.stanford.edu/housenumbers/"
IMAGE_SHAPE = (32, 32, 3)
# Where the files are looked for when no --data_dir is given.
DEFAULT_DIR = pathlib.Path(os.environ.get("TFP_VAE_SVHN_DIR", "~/tfp_vae_data/svhn")).expanduser()
# The reference trains on "extra" (torchvision's SVHN(split='extra')).
TRAIN_SPLITS = ("extra", "train")


def _where_to_get(folder):
    return (f"Download {FILES['test']} and {FILES['extra']} (the reference's training split; or "
            f"{FILES['train']} with --svhn_split=train) from {URL} into {folder} (or pass "
            f"--data_dir), or train from TFDS when online with --data=tfds.")


def read_mat(path):
    """Reads one official SVHN ``.mat`` file.

    Returns:
      ``(images, labels)``: uint8 images (N, 32, 32, 3), a view of the file's buffer, and uint8
      labels (N,) in 0..9 (label 10 of the file is digit 0).
    Raises:
      DataError: the file is missing, truncated or corrupt, or does not hold SVHN arrays.
    """
    import scipy.io  # Here: SciPy is only needed for SVHN files.
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"SVHN file {path} is missing. {_where_to_get(path.parent)}")
    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
    except (ValueError, OSError, EOFError, TypeError, zlib.error, MemoryError) as e:
        raise DataError(f"SVHN file {path} is truncated or corrupt ({type(e).__name__}: {e}). "
                        f"Download it again from {URL}.") from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path} is a MATLAB file but not an SVHN one: it must hold arrays X and "
                        f"y (found: {', '.join(k for k in mat if not k.startswith('__'))}).")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != IMAGE_SHAPE:
        raise DataError(f"{path}: X must be uint8 of shape (32, 32, 3, N), got {x.dtype} "
                        f"{x.shape}.")
    y = y.reshape(-1)
    if len(y) != x.shape[3]:
        raise DataError(f"{path}: {x.shape[3]} images but {len(y)} labels.")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise DataError(f"{path}: labels must lie in 1..10 (10 = digit 0), got {y.min()}..{y.max()}.")
    return x.transpose(3, 0, 1, 2), (y % 10).astype(np.uint8)


def load_svhn(data_dir=None, source="files", train_split="extra"):
    """Loads SVHN as an :class:`~tfp_vae.data.ImageSet` (images (N, 32, 32, 3) uint8).

    Args:
      data_dir: folder of the official ``.mat`` files (``source='files'``; default
        ``~/tfp_vae_data/svhn`` or ``$TFP_VAE_SVHN_DIR``), or the TFDS data folder.
      source: ``'files'`` or ``'tfds'`` (``tfds.load('svhn_cropped')``, needs internet once).
      train_split: ``'extra'`` (531,131 images, the reference's) or ``'train'`` (73,257).
    """
    if train_split not in TRAIN_SPLITS:
        raise DataError(f"unknown SVHN training split {train_split!r}; use 'extra' (the "
                        f"reference's) or 'train'.")
    if source == "tfds":
        return _load_tfds(data_dir, train_split)
    if source != "files":
        raise DataError(f"unknown SVHN source {source!r}: use 'files' or 'tfds'.")
    folder = DEFAULT_DIR if data_dir is None else pathlib.Path(data_dir)
    missing = [FILES[s] for s in (train_split, "test") if not (folder / FILES[s]).is_file()]
    if missing:
        raise DataError(f"SVHN data not found: {', '.join(missing)} missing in {folder}. "
                        f"{_where_to_get(folder)}")
    train_x, train_y = read_mat(folder / FILES[train_split])
    test_x, test_y = read_mat(folder / FILES["test"])
    return ImageSet(train_x, train_y, test_x, test_y, image_shape=IMAGE_SHAPE, name="svhn")


def _load_tfds(data_dir, train_split):
    import tensorflow_datasets as tfds  # Imported here: TFDS is slow to import and optional.

    def arrays(split):
        ds = tfds.load("svhn_cropped", split=split, as_supervised=True, data_dir=data_dir)
        batches = tfds.as_numpy(ds.batch(10_000))
        n = int(ds.cardinality())  # known for a prepared TFDS dataset
        if n < 0:
            batches = list(batches)
            n = sum(len(labels) for _, labels in batches)
        # Filled batch by batch: the split is held once (concatenating batches would hold it twice).
        x, y, i = np.empty((n, *IMAGE_SHAPE), np.uint8), np.empty(n, np.uint8), 0
        for images, labels in batches:
            x[i:i + len(images)], y[i:i + len(images)] = images, labels
            i += len(images)
        return x, y

    try:
        (xtr, ytr), (xte, yte) = arrays(train_split), arrays("test")
    except Exception as e:  # TFDS raises many types for "cannot download / not prepared".
        raise DataError(f"tfds.load('svhn_cropped') failed ({type(e).__name__}: {e}). It needs "
                        f"internet access the first time; offline, use the official .mat files: "
                        f"{_where_to_get(DEFAULT_DIR)}") from None
    return ImageSet(xtr, ytr, xte, yte, image_shape=IMAGE_SHAPE, name="svhn")
