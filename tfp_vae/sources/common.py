"""What every data source shares: the :class:`ImageSet` it returns, the memory budget that decides
whether images are held in memory or read from disk, and the checks of images and labels.

Images are uint8 in 0..255 (or float32 in [0, 1]) of shape (N, height, width, channels). A split
is held as a NumPy array when it fits the memory budget; above it, it is a :class:`DiskArray`,
whose rows are read from a file with ``os.pread`` when a batch asks for them (the page cache is the
kernel's; the process holds only the batch). Sources that can be read in place (uncompressed IDX
files) are read from their own file; the others (gzip, PNG/JPEG folders, TFDS) are decoded once,
as they stream, into a temporary file that lives as long as the array.
"""

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import tempfile
import weakref

import numpy as np

from tfp_vae.errors import DataError, WriteError

log = logging.getLogger(__name__)

# The default of --memory_budget: MNIST (55 MB) and SVHN's train split (225 MB) and its extra
# split (1.6 GB) are held in memory; larger data is read from disk batch by batch.
DEFAULT_BUDGET = "2GiB"
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 10 ** 3, "kib": 1 << 10, "m": 1 << 20,
          "mb": 10 ** 6, "mib": 1 << 20, "g": 1 << 30, "gb": 10 ** 9, "gib": 1 << 30,
          "t": 1 << 40, "tb": 10 ** 12, "tib": 1 << 40}
_CHUNK_BYTES = 1 << 20  # what a source reads or writes at a time (peak: a few of these)


def parse_size(text):
    """Bytes of a size such as ``"2GiB"``, ``"512M"``, ``"100MB"`` or ``"1048576"`` (K, M, G, T are
    powers of 1024, KB, MB, GB, TB powers of 1000)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match and match.group(2).lower()
    if not match or unit not in _UNITS:
        raise DataError(f"--memory_budget={text!r} is not a size: write a number with an optional "
                        f"unit, e.g. 2GiB, 512MiB or 100MB.")
    return int(float(match.group(1)) * _UNITS[unit])


def steps_per_epoch(num_examples, batch_size):
    """Steps in one pass with the last partial batch kept (the reference's ``drop_last=False``):
    the training stream's epoch, the schedules' and the recipes' unit."""
    return -(-num_examples // batch_size)


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """A dataset of images with optional integer labels, split into train and test.

    Attributes:
      train_images, test_images: (N, height, width, channels) uint8 in 0..255 or float32 in
        [0, 1], each a NumPy array or a :class:`DiskArray`.
      train_labels, test_labels: (N,) integer labels in 0..num_classes-1, or None (unlabelled).
      image_shape: (height, width, channels) of one image.
      name: a short name (run names use it): ``mnist``, ``svhn``, a folder or file name, a TFDS
        name.
      num_classes: the number of classes (0 when unlabelled); by default 1 + the largest label.
      class_names: the names of the classes (an image folder's subfolders, TFDS's names), or None.
      reference: whether this is the canonical MNIST (checked by SHA-256), on which the CS236
        reference protocol and subsets apply.
      source: where the data came from (a resolved path or ``tfds:NAME``).
      fingerprint: SHA-256 of the content read; resuming a run on other data is refused with it.
      validation_images, validation_labels: training images held out as a validation split
        (:func:`tfp_vae.data.hold_out`), or None.
    """
    train_images: object
    train_labels: object
    test_images: object
    test_labels: object
    image_shape: tuple = (28, 28, 1)
    name: str = "mnist"
    num_classes: int = None
    class_names: tuple = None
    reference: bool = False
    source: str = ""
    fingerprint: str = ""
    validation_images: object = None
    validation_labels: object = None

    def __post_init__(self):
        if self.num_classes is None:
            labels = [y for y in (self.train_labels, self.test_labels) if y is not None and len(y)]
            count = max((int(np.max(y)) + 1 for y in labels), default=0)
            object.__setattr__(self, "num_classes", count)
        object.__setattr__(self, "image_shape", tuple(int(d) for d in self.image_shape))

    @property
    def held_out(self):
        """How many training images the validation split took (0: none; the training split is
        then the file's)."""
        return 0 if self.validation_images is None else len(self.validation_images)

    @property
    def labelled(self):
        """Whether both splits carry labels."""
        return self.train_labels is not None and self.test_labels is not None

    @property
    def x_dim(self):
        """Pixels (times channels) of one image: the length of a flattened image."""
        return int(np.prod(self.image_shape))

    def class_name(self, label):
        """The name of class ``label`` (its number when the classes have no names)."""
        return self.class_names[label] if self.class_names else str(label)

    def describe(self):
        """One line: name, sizes, image shape, classes and where the data is held."""
        def held(x):
            return "memory" if isinstance(x, np.ndarray) else "disk"
        h, w, c = self.image_shape
        classes = f"{self.num_classes} classes" if self.labelled else "no labels"
        split = f" and {self.held_out:,} validation" if self.held_out else ""
        return (f"{self.name}: {len(self.train_images):,} training{split} and "
                f"{len(self.test_images):,} test images of {h}x{w}x{c}, {classes} (train in "
                f"{held(self.train_images)}, test in {held(self.test_images)}; from "
                f"{self.source})")


class Rows:
    """Chosen rows of an array read on demand: ``Rows(a, index)[k]`` is ``a[index[k]]``, so that
    a split of a :class:`DiskArray` stays on disk."""

    def __init__(self, array, index):
        self.array, self.index = array, np.asarray(index, np.int64)
        self.shape = (len(self.index), *array.shape[1:])
        self.dtype, self.ndim = array.dtype, array.ndim

    def __len__(self):
        return len(self.index)

    def __getitem__(self, key):
        return self.array[self.index[key]]

    def __array__(self, dtype=None, copy=None):
        out = self.array[self.index]
        return out if dtype is None else out.astype(dtype)


class DiskArray:
    """A read-only array of shape (N, ...) stored row after row in a file from byte ``offset``.

    Indexing with an integer, a slice or an array of indices reads just those rows (runs of
    consecutive rows in one ``os.pread``) and returns a NumPy array; nothing else is held.
    Written by hand because ``np.memmap`` maps the file into the process, so that every image
    read once stays in its resident memory (and the budget's measure) until the kernel reclaims it.
    """

    def __init__(self, path, offset, shape, dtype=np.uint8, temporary=False):
        self.path, self.offset = os.fspath(path), int(offset)
        self.shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        self._fd = os.open(self.path, os.O_RDONLY)
        cleanup = [self._fd, self.path if temporary else None]
        self._finalizer = weakref.finalize(self, _close_and_remove, *cleanup)

    ndim = property(lambda self: len(self.shape))
    nbytes = property(lambda self: self.shape[0] * self.row_bytes)
    size = property(lambda self: int(np.prod(self.shape)))

    def __len__(self):
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        return self[:].astype(dtype) if dtype is not None else self[:]

    def _read(self, start, count):
        raw = os.pread(self._fd, count * self.row_bytes, self.offset + start * self.row_bytes)
        if len(raw) != count * self.row_bytes:
            raise DataError(f"{self.path} became shorter while in use (rows {start}..."
                            f"{start + count - 1} cannot be read).")
        return np.frombuffer(raw, self.dtype).reshape(count, *self.shape[1:])

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            index = int(key) + n if key < 0 else int(key)
            if not 0 <= index < n:
                raise IndexError(f"index {key} is out of range for {n} rows")
            out = self._read(index, 1)[0]
        elif isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(n)
            out = self._read(start, max(stop - start, 0))
        else:
            index = np.arange(n)[key] if isinstance(key, slice) else np.asarray(key, np.int64)
            index = np.where(index < 0, index + n, index)
            if index.size and (index.min() < 0 or index.max() >= n):
                raise IndexError(f"indices out of range for {n} rows")
            out = np.empty((index.size, *self.shape[1:]), self.dtype)
            order = np.argsort(index, kind="stable")
            ordered = index[order]
            # Runs of consecutive rows are read in one call.
            breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
            for run in np.split(np.arange(ordered.size), breaks):
                if run.size:
                    out[order[run]] = self._read(int(ordered[run[0]]), run.size)[
                        ordered[run] - ordered[run[0]]]
            out = out.reshape(*index.shape, *self.shape[1:])
        return out[(slice(None),) + rest] if rest else out

    def __repr__(self):
        return f"DiskArray({self.path!r}, shape={self.shape}, dtype={self.dtype.name})"


def _close_and_remove(fd, path):
    os.close(fd)
    if path:
        with contextlib.suppress(OSError):
            os.remove(path)


class MemoryBudget:
    """How many bytes of images a dataset may hold in memory; what does not fit goes to disk.

    :meth:`sink` gives each split a place to write its rows to as they are decoded: a NumPy array
    when the split fits what is left of the budget, else a temporary file in ``spill_dir`` (the
    system's temporary folder by default) that becomes a :class:`DiskArray`.
    """

    def __init__(self, nbytes=DEFAULT_BUDGET, spill_dir=None):
        self.total = parse_size(nbytes) if isinstance(nbytes, str) else int(nbytes)
        self.remaining = self.total
        self.spill_dir = spill_dir

    @classmethod
    def of(cls, budget):
        """``budget`` itself, or an unlimited budget for None (the sources' default)."""
        return budget if budget is not None else cls(1 << 62)

    def take(self, nbytes):
        """Reserves ``nbytes`` if they fit; returns whether they did."""
        if nbytes <= self.remaining:
            self.remaining -= nbytes
            return True
        return False

    def sink(self, row_shape, dtype=np.uint8, count=None):
        """A :class:`Sink` for rows of ``row_shape``; ``count`` rows if known in advance."""
        return Sink(self, tuple(row_shape), np.dtype(dtype), count)


class Sink:
    """Rows written in order, then :meth:`finish` -> a NumPy array or a :class:`DiskArray`.

    Used as a context manager, its spill file is removed when the block raises (a bad source)."""

    def __init__(self, budget, row_shape, dtype, count):
        self.budget, self.row_shape, self.dtype, self.count = budget, row_shape, dtype, count
        self.row_bytes = int(np.prod(row_shape)) * dtype.itemsize
        self.written = 0
        self.array, self.file = None, None
        if count is not None and budget.take(count * self.row_bytes):
            self.array = np.empty((count, *row_shape), dtype)
        else:
            with self._spilling():
                fd, self.path = tempfile.mkstemp(prefix="tfp_vae-", suffix=".rows",
                                                 dir=budget.spill_dir)
                self.file = os.fdopen(fd, "wb")

    @contextlib.contextmanager
    def _spilling(self):
        """File-system faults of the spill file (a full or unwritable temporary folder) as one
        WriteError that names the folder and the fixes; the spill file is removed."""
        try:
            yield
        except OSError as e:
            self.abandon()
            where = self.budget.spill_dir or tempfile.gettempdir()
            raise WriteError(f"cannot hold the images above the memory budget in {where} "
                             f"({e.strerror or e}); free space there, point TMPDIR at a folder "
                             f"with room, or raise --memory_budget.") from None

    def write(self, rows):
        rows = np.ascontiguousarray(rows, self.dtype).reshape(-1, *self.row_shape)
        if self.count is not None and self.written + len(rows) > self.count:
            raise DataError(f"more rows than the {self.count} declared.")
        if self.array is not None:
            self.array[self.written:self.written + len(rows)] = rows
        else:
            with self._spilling():
                self.file.write(rows.data)
        self.written += len(rows)

    def finish(self):
        """The rows written: in memory if they fit the budget, else read from the spill file."""
        if self.array is not None:
            return self.array[:self.written] if self.written < self.count else self.array
        with self._spilling():
            self.file.close()
        shape = (self.written, *self.row_shape)
        if self.budget.take(self.written * self.row_bytes):
            array = np.fromfile(self.path, self.dtype).reshape(shape)
            os.remove(self.path)
            return array
        return DiskArray(self.path, 0, shape, self.dtype, temporary=True)

    def abandon(self):
        """Removes the spill file of a sink whose source turned out to be bad."""
        if self.file is not None:
            with contextlib.suppress(OSError):  # closing flushes, which fails on a full disk
                self.file.close()
            with contextlib.suppress(OSError):
                os.remove(self.path)
            self.file = None

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is not None:
            self.abandon()


def row_blocks(f, shape, dtype, where):
    """The rows of a (``shape``, ``dtype``) array read from the byte stream ``f``, as blocks of
    about ``_CHUNK_BYTES``; DataError naming ``where`` if the stream ends early."""
    dtype = np.dtype(dtype)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    rows = max(1, _CHUNK_BYTES // max(row_bytes, 1))
    for start in range(0, shape[0], rows):
        n = min(rows, shape[0] - start)
        raw = f.read(n * row_bytes)
        if len(raw) != n * row_bytes:
            raise DataError(f"{where} is truncated: its header declares shape {_shape(shape)}, but "
                            f"the data ends after {start * row_bytes + len(raw):,} bytes.")
        yield np.frombuffer(raw, dtype).reshape(n, *shape[1:])


# The largest class number: labels become int32 in TensorFlow (one-hots, gathers).
MAX_LABEL = 2**31 - 2


def check_labels(labels, count, where):
    """Integer labels (N,) as int64, checked: one per image, integers (integral floats pass),
    finite and non-negative. Raises DataError naming ``where`` otherwise."""
    y = np.asarray(labels)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be one integer per image, shape (N,); got shape "
                        f"{_shape(y.shape)}.")
    if len(y) != count:
        raise DataError(f"{where}: {count} images but {len(y)} labels; give one label per image.")
    if y.dtype.kind in "iu":
        pass
    elif y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{where}: labels must be integers; label {i} is {y[i]!r}. Store the "
                            f"class numbers 0..K-1 as integers.")
    else:
        raise DataError(f"{where}: labels must be integers, got {y.dtype.name} values. Store the "
                        f"class numbers 0..K-1 as integers.")
    if len(y) and y.min() < 0:
        raise DataError(f"{where}: labels must be class numbers 0..K-1; found {int(y.min())}.")
    if len(y) and y.max() > MAX_LABEL:  # before the cast: 2^63 and more would wrap
        raise DataError(f"{where}: labels must be class numbers 0..K-1 with K at most "
                        f"{MAX_LABEL + 1:,}; found {y.max():.0f}. Number the classes from 0.")
    return y.astype(np.int64)


def image_layout(shape, where):
    """(height, width, channels) of images of array shape (N, H, W) or (N, H, W, C), C = 1 or 3."""
    if len(shape) == 3:
        shape = (*shape, 1)
    if len(shape) != 4 or min(shape[1:]) <= 0:
        raise DataError(f"{where}: images must be an array (N, height, width) or (N, height, "
                        f"width, channels); got shape {_shape(shape)}.")
    if shape[3] not in (1, 3):
        raise DataError(f"{where}: images must have 1 (grey) or 3 (RGB) channels; got "
                        f"{shape[3]}. Convert them to grey or RGB.")
    return tuple(int(d) for d in shape[1:])


def check_pixels(images, where):
    """Images as uint8 0..255 or float32 in [0, 1] (checked); other types are an error."""
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind == "f":
        x = np.asarray(images, np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"{where}: images contain NaN or infinite values.")
        if x.size and (x.min() < 0 or x.max() > 1):
            raise DataError(f"{where}: float images must lie in [0, 1], found values in "
                            f"[{x.min():g}, {x.max():g}]; divide them by the value that is white "
                            f"in your data (255 for 8-bit images), or store them as uint8 and "
                            f"pass --pixel_max=WHITE.")
        return x
    raise DataError(f"{where}: images must be uint8 (0..255) or float in [0, 1], got "
                    f"{images.dtype.name}.")


def _shape(shape):
    """A shape for a message, shortened when it has many dimensions."""
    shape = tuple(int(d) for d in shape)
    return str(shape) if len(shape) <= 6 else f"({', '.join(map(str, shape[:4]))}, ... " \
                                              f"{len(shape)} dimensions)"


def safe_name(text):
    """A run-name-safe version of a dataset name (letters, digits, '.', '_' and '-')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "data"


def combine_digests(*parts):
    """One SHA-256 hex digest of several (name, digest) parts."""
    digest = hashlib.sha256()
    for name, part in parts:
        digest.update(f"{name}={part};".encode())
    return digest.hexdigest()


# Integer images whose largest value is below this use less than half of 0..255: most likely a
# smaller scale (scikit-learn's digits are 0..16), which 255 would make nearly black.
DIM = 128


def pixel_scale(dataset, pixel_max=None, budget=None):
    """``dataset`` with uint8 images read on the scale 0..``pixel_max`` (white = ``pixel_max``,
    rescaled to 0..255, recorded in the fingerprint), or as it is when ``pixel_max`` is None,
    with a logged note when its images look like a smaller scale (largest value below
    :data:`DIM`) saying how to read them so.

    Raises:
      DataError: ``pixel_max`` for float images, or pixels above ``pixel_max``.
    """
    if dataset.train_images.dtype != np.uint8:
        if pixel_max is not None:
            raise DataError(f"--pixel_max is for integer images; {dataset.name}'s are floats in "
                            f"[0, 1] already.")
        return dataset
    if pixel_max is None:
        brightest = max(int(np.max(split[:10_000])) if len(split) else 0
                        for split in (dataset.train_images, dataset.test_images))
        if brightest < DIM:
            log.info("note: the brightest pixel of %s is %d of 255, so its images are nearly "
                     "black as read; if %d is white in this data, pass --pixel_max=%d.",
                     dataset.name, brightest, brightest, brightest)
        return dataset
    if not 1 <= pixel_max <= 255:
        raise DataError(f"--pixel_max must be in 1..255 (the value that is white in uint8 "
                        f"images), got {pixel_max}.")
    budget = MemoryBudget.of(budget)
    splits = {name: _rescaled(getattr(dataset, name), pixel_max, budget, dataset.name)
              for name in ("train_images", "test_images")}
    return dataclasses.replace(dataset, **splits, fingerprint=combine_digests(
        ("data", dataset.fingerprint), ("pixel_max", pixel_max)))


def _rescaled(images, pixel_max, budget, name, rows=8192):
    with budget.sink(images.shape[1:], np.uint8, len(images)) as sink:
        for start in range(0, len(images), rows):
            block = np.asarray(images[start:start + rows])
            if block.size and block.max() > pixel_max:
                raise DataError(f"{name} has pixels up to {int(block.max())}, above "
                                f"--pixel_max={pixel_max}; pass its white value.")
            sink.write(np.round(block * (255.0 / pixel_max)).astype(np.uint8))
    return sink.finish()
