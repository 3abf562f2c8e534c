"""SVHN (cropped digits) for the FSVAE: the official ``.mat`` files or TFDS ``svhn_cropped``.

The official files (http://ufldl.stanford.edu/housenumbers/) are MATLAB files with ``X``, a
(32, 32, 3, N) uint8 array, and ``y``, an (N, 1) array of labels 1..10 where 10 means digit 0
(REFERENCE.md section 9). They are read with ``scipy.io.loadmat`` into one buffer, and the images
are returned as an (N, 32, 32, 3) *view* of it (MATLAB stores arrays column-major, so each image
is contiguous and the transposed view costs nothing): ``extra_32x32.mat`` (531,131 images) takes
its 1.63 GB of uint8 once, never twice. Training batches are gathered from it and scaled to
[0, 1] one batch at a time (see :func:`tfp_vae.data.train_dataset`).

``scipy.io.loadmat`` reads a file whole, so a file whose images exceed the memory budget is
refused with a message (convert it to IDX or ``.npz``, which stream, or raise the budget).
TFDS's ``svhn_cropped`` is ``--dataset=tfds:svhn_cropped`` (:mod:`tfp_vae.sources.catalog`).
"""

import hashlib
import os
import pathlib
import zlib

import numpy as np

from tfp_vae.sources.common import (DataError, ImageSet, MemoryBudget, check_labels,
                                    combine_digests)

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
            f"--data_dir), or train from TFDS when online with --dataset=tfds:svhn_cropped.")


def read_mat(path, budget=None):
    """Reads one official SVHN ``.mat`` file.

    Returns:
      ``(images, labels, digest)``: uint8 images (N, 32, 32, 3), a view of the file's buffer,
      int64 labels (N,) in 0..9 (label 10 of the file is digit 0), and the SHA-256 of the file.
    Raises:
      DataError: the file is missing, truncated or corrupt, does not hold SVHN arrays, has labels
      that are not integers in 1..10, or holds more than the memory budget allows.
    """
    import scipy.io  # Here: SciPy is only needed for SVHN files.
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"SVHN file {path} is missing. {_where_to_get(path.parent)}")
    corrupt = (ValueError, OSError, EOFError, TypeError, zlib.error, MemoryError)
    try:
        variables = {name: shape for name, shape, _ in scipy.io.whosmat(path)}
    except corrupt as e:
        raise DataError(f"SVHN file {path} is truncated or corrupt ({type(e).__name__}: {e}). "
                        f"Download it again from {URL}.") from None
    size = int(np.prod(variables.get("X", (0,))))
    if budget is not None and not budget.take(size):
        raise DataError(f"{path}: its images take {size:,} bytes, more than the memory budget "
                        f"leaves ({budget.remaining:,} bytes), and .mat files are read whole. "
                        f"Raise --memory_budget, or convert the file to .npz or IDX, which are "
                        f"read batch by batch.")
    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
    except corrupt as e:
        raise DataError(f"SVHN file {path} is truncated or corrupt ({type(e).__name__}: {e}). "
                        f"Download it again from {URL}.") from None
    if "X" not in mat or "y" not in mat:
        found = [k for k in mat if not k.startswith("__")]
        raise DataError(f"{path} is a MATLAB file but not an SVHN one: it must hold arrays X and "
                        f"y (found: {', '.join(found) if found else 'no arrays'}).")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != IMAGE_SHAPE:
        raise DataError(f"{path}: X must be uint8 of shape (32, 32, 3, N), got {x.dtype} "
                        f"{x.shape}.")
    if x.shape[3] == 0:
        raise DataError(f"{path} holds no images (X has shape {x.shape}).")
    y = check_labels(y, x.shape[3], str(path))
    if y.min() < 1 or y.max() > 10:
        raise DataError(f"{path}: labels must lie in 1..10 (10 = digit 0), got {y.min()}..{y.max()}.")
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return x.transpose(3, 0, 1, 2), y % 10, digest


def load_svhn(data_dir=None, train_split="extra", budget=None):
    """Loads SVHN from its official ``.mat`` files as an
    :class:`~tfp_vae.sources.common.ImageSet` (images (N, 32, 32, 3) uint8).

    Args:
      data_dir: folder of the official ``.mat`` files (default ``~/tfp_vae_data/svhn`` or
        ``$TFP_VAE_SVHN_DIR``).
      train_split: ``'extra'`` (531,131 images, the reference's) or ``'train'`` (73,257).
      budget: a :class:`~tfp_vae.sources.common.MemoryBudget`.
    """
    if train_split not in TRAIN_SPLITS:
        raise DataError(f"unknown SVHN training split {train_split!r}; use 'extra' (the "
                        f"reference's) or 'train'.")
    folder = DEFAULT_DIR if data_dir is None else pathlib.Path(data_dir)
    missing = [FILES[s] for s in (train_split, "test") if not (folder / FILES[s]).is_file()]
    if missing:
        raise DataError(f"SVHN data not found: {', '.join(missing)} missing in {folder}. "
                        f"{_where_to_get(folder)}")
    budget = budget or MemoryBudget(1 << 62)
    train_x, train_y, train_digest = read_mat(folder / FILES[train_split], budget)
    test_x, test_y, test_digest = read_mat(folder / FILES["test"], budget)
    return ImageSet(train_x, train_y, test_x, test_y, image_shape=IMAGE_SHAPE, name="svhn",
                    num_classes=10, class_names=tuple(str(d) for d in range(10)),
                    source=str(folder.resolve()),
                    fingerprint=combine_digests((train_split, train_digest), ("test", test_digest)))
