"""Where images come from: one call, :func:`load`, for every source a user can name.

==========================  ===============================================================
``--dataset`` / data_dir    what is read
==========================  ===============================================================
``mnist`` (the default)     the bundled MNIST, or its four IDX ``.gz`` files in ``data_dir``,
                            verified against the canonical SHA-256 digests
``svhn``                    SVHN's official ``.mat`` files in ``data_dir``
``tfds:NAME``               any TFDS image dataset (``data_dir``: TFDS's data folder)
unset, ``data_dir`` given   what the folder (or file) holds: IDX files (any image size and
                            class count), a Keras-convention ``.npz``, SVHN's ``.mat`` files, or
                            image files in class folders
==========================  ===============================================================

Every source returns an :class:`ImageSet` and keeps within a memory budget: a split that does not
fit is read from disk batch by batch (:class:`~tfp_vae.sources.common.DiskArray`).
"""

import pathlib

from tfp_vae import files
from tfp_vae.sources import catalog, folder, idx, npz, svhn
from tfp_vae.sources.common import (DEFAULT_BUDGET, DataError, DiskArray, ImageSet, MemoryBudget,
                                    Rows, parse_size, pixel_scale, steps_per_epoch)

__all__ = ["load", "check_spec", "ImageSet", "DiskArray", "Rows", "MemoryBudget", "DataError",
           "DEFAULT_BUDGET", "parse_size", "steps_per_epoch", "catalog", "folder", "idx", "npz",
           "svhn"]

NAMED = ("mnist", "svhn")


def check_spec(dataset):
    """Raises DataError unless ``dataset`` is None, a named dataset or ``tfds:NAME``."""
    if dataset is None or dataset in NAMED:
        return
    if isinstance(dataset, str) and dataset.startswith("tfds:") and len(dataset) > 5:
        return
    raise DataError(f"unknown --dataset={dataset!r}: use mnist, svhn or tfds:NAME (e.g. "
                    f"tfds:fashion_mnist), or leave it unset and pass --data_dir=FOLDER (IDX "
                    f"files, an .npz file or image folders).")


def load(dataset=None, data_dir=None, memory_budget=DEFAULT_BUDGET, verify_checksums=True,
         svhn_split="extra", default="mnist", spill_dir=None, pixel_max=None):
    """The :class:`ImageSet` of a dataset (see the table of the module docstring).

    Args:
      dataset: ``"mnist"``, ``"svhn"``, ``"tfds:NAME"``, or None (``data_dir`` decides, else
        ``default``).
      data_dir: the folder or file of the data (for TFDS, its data folder).
      memory_budget: bytes (or a size such as ``"2GiB"``) of images held in memory; splits that
        do not fit are read from disk batch by batch.
      verify_checksums: check files named and sized as the canonical MNIST against its digests.
      svhn_split: SVHN's training split, ``"extra"`` (the reference's) or ``"train"``.
      default: the dataset when neither ``dataset`` nor ``data_dir`` is given.
      spill_dir: where decoded data above the budget is written (default: the system's
        temporary folder).
      pixel_max: the value that is white in integer images (default 255); see
        :func:`~tfp_vae.sources.common.pixel_scale`, which also notes images that look dim.
    Raises:
      DataError: naming the file, what is wrong and the fix.
    """
    check_spec(dataset)
    budget = memory_budget if isinstance(memory_budget, MemoryBudget) else \
        MemoryBudget(memory_budget, spill_dir)
    if dataset is None and data_dir is None:
        dataset = default
    if dataset == "mnist":
        found = idx.load_mnist(data_dir, verify_checksums, budget)
    elif dataset == "svhn":
        found = svhn.load_svhn(data_dir, svhn_split, budget)
    elif dataset is not None:
        found = catalog.load(dataset[len("tfds:"):], data_dir, budget)
    else:
        found = detect(data_dir, budget, verify_checksums, svhn_split)
    return pixel_scale(found, pixel_max, budget)


def detect(path, budget=None, verify_checksums=True, svhn_split="extra"):
    """Reads what ``path`` holds: an ``.npz`` file, or a folder of IDX files, of one ``.npz``
    file, of SVHN's ``.mat`` files, or of images in class folders."""
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise DataError(f"--data_dir={path} does not exist. Pass a folder of IDX files, of SVHN's "
                        f".mat files or of images in class folders, or an .npz file.")
    if not path.is_file() and not path.is_dir():
        kind = files.kind_of(path.stat().st_mode)
        raise DataError(f"--data_dir={path} is {kind}, not a folder or a file; pass a folder "
                        f"of data or an .npz file.")
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return npz.load(path, budget)
        raise DataError(f"--data_dir={path} is a file but not an .npz file; pass the folder that "
                        f"holds it (IDX or .mat files), or an .npz file.")
    if idx.find_files(path) or idx.canonical_mnist(path):
        return idx.load_folder(path, verify_checksums, budget)
    archives = sorted(p for p in path.glob("*.npz") if p.is_file())  # no FIFO: it would hang
    if len(archives) > 1:
        raise DataError(f"{path} holds several .npz files ({', '.join(a.name for a in archives)}); "
                        f"pass the one to use as --data_dir=FILE.npz.")
    if archives:
        return npz.load(archives[0], budget)
    if any((path / name).is_file() for name in svhn.FILES.values()):
        return svhn.load_svhn(path, svhn_split, budget)
    if folder.looks_like(path):
        return folder.load(path, budget)
    raise DataError(f"{path} holds no data that tfp_vae recognises: expected MNIST-style IDX files "
                    f"(train-images-idx3-ubyte.gz, ...), an .npz file with x_train and x_test, "
                    f"SVHN's .mat files, or images in one folder per class.")
