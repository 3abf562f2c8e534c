"""Datasets in MNIST's IDX layout: MNIST itself (bundled, verified) and any other.

An IDX file (http://yann.lecun.com/exdb/mnist/) is a 4-byte magic number (0, 0, type, number of
dimensions), one big-endian 4-byte size per dimension, then the values in row-major order;
``.gz`` files are gzip-compressed. Images are (N, height, width) or (N, height, width, channels)
unsigned bytes, labels (N,) unsigned bytes.

A folder is read as a dataset when it holds one training image file and one test image file
(names containing ``train`` and ``t10k`` or ``test``, e.g. ``train-images-idx3-ubyte.gz``), with
label files (``...-labels-idx1-ubyte[.gz]``) for both or for neither.

Reading is bounded by the headers: the bytes a header declares are read, streaming, into an array
(or, above the memory budget, a file read batch by batch), and a file holding more or fewer is
refused, without decompressing more than the declared size. Files named and sized as the
canonical MNIST are verified against its SHA-256 digests; every file is digested as it is read.
"""

import gzip
import hashlib
import logging
import os
import pathlib
import re
import zlib

import numpy as np

from tfp_vae.errors import Error
from tfp_vae.sources.common import (DiskArray, ImageSet, MemoryBudget, DataError, _CHUNK_BYTES,
                                    _shape, check_labels, combine_digests, image_layout,
                                    row_blocks, safe_name)

log = logging.getLogger(__name__)

BUNDLED_DIR = pathlib.Path(__file__).resolve().parent.parent / "mnist"

# name -> (file name, IDX shape, sizes of the .gz file as published and as bundled here,
# SHA-256 of its decompressed bytes).
MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", (60000, 28, 28), (9912422, 9719438),
                     "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": ("train-labels-idx1-ubyte.gz", (60000,), (28881, 28857),
                     "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test_images": ("t10k-images-idx3-ubyte.gz", (10000, 28, 28), (1648877, 1616508),
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", (10000,), (4542, 4517),
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
MNIST_DIGEST = combine_digests(*sorted((key, digest) for key, (*_, digest) in MNIST_FILES.items()))

_UNSIGNED_BYTE = 0x08
# DEFLATE cannot expand data more than 1032-fold: a header declaring more than that (plus room
# for the gzip framing) for its file is impossible, and refused before reading anything.
_MAX_GZIP_RATIO = 1032
_IDX_NAME = re.compile(r".*-idx(\d)-ubyte(\.gz)?$")


def _read_header(f, path, ndims, what, digest):
    """``(shape, header bytes)`` of the IDX stream ``f``, checked: unsigned bytes, one of
    ``ndims`` dimensions. The header goes into ``digest``."""
    magic = _read_exact(f, 4, path, "its magic number")
    if magic[0] or magic[1] or magic[2] != _UNSIGNED_BYTE:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (its magic number is "
                        f"{magic.hex()}; expected 0000080N).")
    if magic[3] not in ndims:
        raise DataError(f"{path} declares {magic[3]} dimensions; {what}s have "
                        f"{' or '.join(map(str, ndims))}.")
    sizes = _read_exact(f, 4 * magic[3], path, "its header")
    digest.update(magic + sizes)
    return tuple(int.from_bytes(sizes[i:i + 4], "big") for i in range(0, len(sizes), 4)), \
        4 + len(sizes)


def read_idx(path, budget=None, ndims=(3, 4), sha256=None, what="IDX file"):
    """Reads one IDX file (gzip-compressed if its name ends in ``.gz``), checking it on the way.

    Args:
      path: the file.
      budget: a :class:`~tfp_vae.sources.common.MemoryBudget` (None: no limit).
      ndims: the numbers of dimensions allowed (images 3 or 4, labels 1).
      sha256: the expected SHA-256 of the decompressed bytes, or None to accept any content.
      what: how messages name the file.
    Returns:
      ``(array, digest)``: the values, (N, ...) uint8 with a channel axis added to (N, H, W)
      images (a NumPy array, or a
      :class:`~tfp_vae.sources.common.DiskArray` above the budget), and the SHA-256 hex digest of
      the decompressed bytes.
    Raises:
      DataError: the file is missing, truncated, corrupt, longer than its header declares, not
      an IDX file of unsigned bytes, of another number of dimensions, or of the wrong content.
    """
    path = pathlib.Path(path)
    budget = MemoryBudget.of(budget)
    if not path.is_file():
        raise DataError(f"{what} {path} is missing.")
    compressed = path.name.endswith(".gz")
    file_size = path.stat().st_size
    digest = hashlib.sha256()
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
            shape, header = _read_header(f, path, ndims, what, digest)
            count = int(np.prod(shape, dtype=object))
            if compressed and count > _MAX_GZIP_RATIO * file_size + (1 << 16):
                raise DataError(f"{path}: its header declares shape {_shape(shape)} "
                                f"({count:,} bytes), more than a {file_size:,}-byte gzip file "
                                f"can hold; the file is corrupt.")
            if not compressed and file_size != header + count:
                raise DataError(f"{path} is truncated or has trailing bytes: {file_size - header:,}"
                                f" data bytes for the shape {_shape(shape)} its header declares.")
            held = (*shape, 1) if len(shape) == 3 else shape  # grey images get a channel axis
            if not compressed and not budget.take(count):
                array = DiskArray(path, header, held)
                _digest_file(f, count, digest, path)
            else:
                array = _read_rows(f, shape, held[1:], budget, digest, path)
            if compressed and f.read(1):
                raise DataError(f"{path} holds more data than the shape {_shape(shape)} its header "
                                f"declares; the file is corrupt (reading stopped there).")
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, Error):  # a DataError, or the spill's WriteError (a full TMPDIR)
            raise
        raise DataError(f"{what} {path} is truncated or corrupt ({e}). Replace it with a fresh "
                        f"copy.") from None
    hexdigest = digest.hexdigest()
    if sha256 is not None and hexdigest != sha256:
        raise DataError(f"{path} does not have the expected content of the canonical MNIST file "
                        f"of that name (SHA-256 of the decompressed bytes differs). Replace it "
                        f"with the canonical file (the bundled copy is in {BUNDLED_DIR}), or, if "
                        f"it is another dataset in MNIST's layout, pass --noverify_checksums (and "
                        f"leave --dataset unset) to read it as a dataset of its own.")
    return array, hexdigest


def _read_exact(f, n, path, what):
    raw = f.read(n)
    if len(raw) != n:
        raise DataError(f"{path} is truncated: {what} is incomplete.")
    return raw


def _read_rows(f, shape, row_shape, budget, digest, path):
    """Reads the declared values block by block into a budget sink of rows of ``row_shape``
    (never more than declared)."""
    with budget.sink(row_shape, np.uint8, shape[0]) as sink:
        for block in row_blocks(f, shape, np.uint8, path):
            digest.update(block.data)
            sink.write(block)
    return sink.finish()


def _digest_file(f, count, digest, path):
    left = count
    while left:
        raw = f.read(min(left, _CHUNK_BYTES))
        if not raw:
            raise DataError(f"{path} is truncated.")
        digest.update(raw)
        left -= len(raw)


def canonical_mnist(folder):
    """Whether ``folder`` holds files named and sized as the canonical MNIST's four files (as
    published, or as bundled with this package)."""
    folder = pathlib.Path(folder)
    return all((folder / name).is_file() and (folder / name).stat().st_size in sizes
               for name, _, sizes, _ in MNIST_FILES.values())


def load_mnist(data_dir=None, verify_checksums=True, budget=None):
    """MNIST from its four IDX ``.gz`` files (``data_dir``; None = the copy bundled with the
    package), verified against the canonical SHA-256 digests (unless ``verify_checksums`` is
    False, when only their structure is checked).

    Returns:
      An :class:`~tfp_vae.sources.common.ImageSet` of (N, 28, 28, 1) uint8 images; ``reference``
      is True when the content is the canonical MNIST's.
    """
    folder = BUNDLED_DIR if data_dir is None else pathlib.Path(data_dir)
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist. Create it and put the four MNIST "
                        f"IDX .gz files in it, or leave --data_dir unset to use the bundled copy.")
    missing = [name for name, *_ in MNIST_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise DataError(f"MNIST file {folder / missing[0]} is missing. Put the four MNIST IDX .gz "
                        f"files ({', '.join(n for n, *_ in MNIST_FILES.values())}) in {folder}, "
                        f"or leave --data_dir unset to use the bundled copy.")
    files = {key: folder / name for key, (name, *_) in MNIST_FILES.items()}
    expected = {key: digest for key, (*_, digest) in MNIST_FILES.items()} if verify_checksums \
        else {}
    dataset = _load(files, budget, safe_name(folder.resolve().name), str(folder.resolve()),
                    expected, shapes={key: shape for key, (_, shape, *_) in MNIST_FILES.items()})
    for split in ("train", "test"):
        if getattr(dataset, f"{split}_labels").max() > 9:
            raise DataError(f"{split} labels in {folder} are outside 0..9: not MNIST. Leave "
                            f"--dataset unset to read the folder as a dataset of its own.")
    return dataset


def find_files(folder):
    """The IDX files of a folder as ``{"train_images", "test_images", "train_labels",
    "test_labels": path}`` (labels may be absent); empty when it holds no IDX file."""
    found = {}
    for path in sorted(pathlib.Path(folder).iterdir()):
        match = _IDX_NAME.match(path.name.lower())
        if not match or not path.is_file():
            continue
        name = path.name.lower()
        split = "train" if "train" in name else "test" if ("t10k" in name or "test" in name) \
            else None
        kind = "labels" if match.group(1) == "1" else "images"
        if split is None:
            raise DataError(f"{path}: cannot tell whether this IDX file is the training or the "
                            f"test split; put 'train' or 'test' (or 't10k') in its name.")
        key = f"{split}_{kind}"
        if key in found:
            raise DataError(f"{folder} holds two IDX files for the {split} {kind}: "
                            f"{found[key].name} and {path.name}; keep one.")
        found[key] = path
    return found


def load_folder(folder, verify_checksums=True, budget=None):
    """Any dataset in MNIST's IDX layout in ``folder`` (see the module docstring).

    A folder whose files are named and sized as the canonical MNIST is read as MNIST, its
    checksums verified (unless ``verify_checksums`` is False); any other is checked for its
    structure (headers, sizes, counts, labels) and reported as not a known dataset.
    """
    folder = pathlib.Path(folder)
    if canonical_mnist(folder):
        return load_mnist(folder, verify_checksums, budget)
    files = find_files(folder)
    for split in ("train", "test"):
        if f"{split}_images" not in files:
            raise DataError(f"{folder} holds IDX files but no {split} images (a file named like "
                            f"'{'train' if split == 'train' else 't10k'}-images-idx3-ubyte.gz').")
    if ("train_labels" in files) != ("test_labels" in files):
        have = "train" if "train_labels" in files else "test"
        raise DataError(f"{folder} has IDX labels for the {have} split only; give both splits "
                        f"labels (…-labels-idx1-ubyte.gz) or neither.")
    log.info("note: %s is not a known dataset (not the canonical MNIST files): checked its IDX "
             "structure, sizes and labels only.", folder)
    return _load(files, budget, safe_name(folder.resolve().name), str(folder.resolve()), {})


def _load(files, budget, name, source, expected, shapes=None):
    budget = MemoryBudget.of(budget)
    arrays, digests = {}, {}
    for key in ("train_images", "test_images", "train_labels", "test_labels"):
        if key not in files:
            arrays[key] = None
            continue
        labels = key.endswith("labels")
        arrays[key], digests[key] = read_idx(files[key], budget, (1,) if labels else (3, 4),
                                             expected.get(key),
                                             "IDX label file" if labels else "IDX image file")
        want = (shapes or {}).get(key)
        if want is not None and tuple(arrays[key].shape[:len(want)]) != tuple(want):
            raise DataError(f"{files[key]} holds an array of shape {_shape(arrays[key].shape)}, "
                            f"expected {tuple(want)}.")
    layouts = {image_layout(arrays[f"{s}_images"].shape, files[f"{s}_images"])
               for s in ("train", "test")}
    if len(layouts) > 1:
        raise DataError(f"the training images ({files['train_images'].name}) and the test images "
                        f"({files['test_images'].name}) differ in shape: {sorted(layouts)}.")
    for split in ("train", "test"):
        images = arrays[f"{split}_images"]
        if len(images) == 0:
            raise DataError(f"{files[f'{split}_images']} holds no images: the {split} split is "
                            f"empty.")
        if arrays[f"{split}_labels"] is not None:
            arrays[f"{split}_labels"] = check_labels(arrays[f"{split}_labels"], len(images),
                                                     str(files[f"{split}_labels"]))
    fingerprint = combine_digests(*sorted(digests.items()))
    reference = fingerprint == MNIST_DIGEST
    return ImageSet(arrays["train_images"], arrays["train_labels"], arrays["test_images"],
                    arrays["test_labels"], image_shape=layouts.pop(),
                    name="mnist" if reference else name, reference=reference,
                    source="bundled MNIST" if reference and _bundled(files) else source,
                    fingerprint=fingerprint)


def _bundled(files):
    return all(os.path.dirname(os.path.abspath(p)) == str(BUNDLED_DIR) for p in files.values())
