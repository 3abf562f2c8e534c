"""SVHN (cropped digits) for the FSVAE: the official ``.mat`` files or TFDS ``svhn_cropped``.

The official files (http://ufldl.stanford.edu/housenumbers/) are MATLAB files with ``X``, a
(32, 32, 3, N) uint8 array, and ``y``, an (N, 1) array of labels 1..10 where 10 means digit 0
(docs/reference.md section 9). They are read streaming (:mod:`tfp_vae.sources.mat5`): MATLAB stores
arrays column-major, so each image is a contiguous 3072 bytes, transposed to (32, 32, 3) block by
block as it is inflated, into memory or, above the memory budget, a file read batch by batch:
``extra_32x32.mat`` (531,131 images) takes its 1.63 GB of uint8 once, never twice. Training
batches are gathered from it and scaled to [0, 1] one batch at a time (see
:func:`tfp_vae.data.train_dataset`). TFDS's ``svhn_cropped`` is ``--dataset=tfds:svhn_cropped``
(:mod:`tfp_vae.sources.catalog`).
"""

import os
import pathlib

import numpy as np

from tfp_vae.sources import mat5
from tfp_vae.sources.common import (DataError, ImageSet, MemoryBudget, check_labels,
                                    combine_digests, row_blocks)

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
    """Reads one official SVHN ``.mat`` file, streaming (:mod:`tfp_vae.sources.mat5`).

    Returns:
      ``(images, labels, digest)``: uint8 images (N, 32, 32, 3) (a NumPy array, or above the
      memory budget a :class:`~tfp_vae.sources.common.DiskArray`), int64 labels (N,) in 0..9
      (label 10 of the file is digit 0), and the SHA-256 of the file.
    Raises:
      DataError: the file is missing, truncated or corrupt, does not hold SVHN arrays, or has
      labels that are not integers in 1..10.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"SVHN file {path} is missing. {_where_to_get(path.parent)}")
    budget = MemoryBudget.of(budget)
    found = {}

    def handle(name, dims, dtype, nbytes, read):
        found[name] = dims
        if name == "y":
            found["y"] = np.frombuffer(read(nbytes), dtype).reshape(dims, order="F")
        elif name == "X":
            if dtype != np.uint8 or len(dims) != 4 or tuple(dims[:3]) != IMAGE_SHAPE:
                raise DataError(f"{path}: X must be uint8 of shape (32, 32, 3, N), got "
                                f"{dtype.name} {tuple(dims)}.")
            found["X"] = _read_images(read, dims[3], budget)
    try:
        digest = mat5.read(path, handle)
    except DataError as e:
        if "truncated or corrupt" in str(e):
            raise DataError(f"SVHN file {e} Download it again from {URL}.") from None
        raise
    if "X" not in found or "y" not in found:
        names = [k for k in found]
        raise DataError(f"{path} is a MATLAB file but not an SVHN one: it must hold arrays X and "
                        f"y (found: {', '.join(names) if names else 'no arrays'}).")
    x = found["X"]
    if len(x) == 0:
        raise DataError(f"{path} holds no images (X has shape (32, 32, 3, 0)).")
    y = check_labels(found["y"], len(x), str(path))
    if y.min() < 1 or y.max() > 10:
        raise DataError(f"{path}: labels must lie in 1..10 (10 = digit 0), "
                        f"got {y.min()}..{y.max()}.")
    return x, y % 10, digest


def _read_images(read, count, budget):
    """N images stored column-major (each a contiguous 3072 bytes in channel, column, row
    order) -> (N, 32, 32, 3) rows, block by block into a budget sink."""
    with budget.sink(IMAGE_SHAPE, np.uint8, count) as sink:
        for block in row_blocks(_Reader(read), (count, 3, 32, 32), np.uint8, "X"):
            # (n, channel, column, row) -> (n, row, column, channel)
            sink.write(block.transpose(0, 3, 2, 1))
    return sink.finish()


class _Reader:
    """A ``read(n)`` function as a file-like object."""

    def __init__(self, read):
        self.read = read


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
    budget = MemoryBudget.of(budget)
    train_x, train_y, train_digest = read_mat(folder / FILES[train_split], budget)
    test_x, test_y, test_digest = read_mat(folder / FILES["test"], budget)
    return ImageSet(train_x, train_y, test_x, test_y, image_shape=IMAGE_SHAPE, name="svhn",
                    num_classes=10, class_names=tuple(str(d) for d in range(10)),
                    source=str(folder.resolve()),
                    fingerprint=combine_digests((train_split, train_digest), ("test", test_digest)))
