"""Datasets in Keras' ``.npz`` convention (``keras.datasets.mnist.load_data`` reads such a file):
arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``.

Images are uint8 (0..255) or float in [0, 1], shaped (N, height, width) or (N, height, width,
channels) with 1 or 3 channels; labels are optional (both splits or neither) and must be
integers. Each image array is streamed out of the archive (compressed or not) row block by row
block into memory or, above the memory budget, a file read batch by batch; nothing is unpickled.
"""

import hashlib
import pathlib
import zipfile
import zlib

import numpy as np

from tfp_vae.errors import Error
from tfp_vae.sources.common import (DataError, ImageSet, MemoryBudget, check_labels,
                                    check_pixels, combine_digests, image_layout, row_blocks,
                                    safe_name)

def load(path, budget=None):
    """The :class:`~tfp_vae.sources.common.ImageSet` of a Keras-convention ``.npz`` file."""
    path = pathlib.Path(path)
    budget = MemoryBudget.of(budget)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a readable .npz file ({e}); write it with numpy.savez or "
                        f"numpy.savez_compressed.") from None
    with archive:
        members = {name[:-4]: name for name in archive.namelist() if name.endswith(".npy")}
        missing = [key for key in ("x_train", "x_test") if key not in members]
        if missing:
            raise DataError(f"{path} has no {' and no '.join(missing)} array (found: "
                            f"{', '.join(sorted(members)) or 'nothing'}). Save the arrays as "
                            f"numpy.savez(file, x_train=..., y_train=..., x_test=..., y_test=...); "
                            f"the labels are optional.")
        if ("y_train" in members) != ("y_test" in members):
            only = "y_train" if "y_train" in members else "y_test"
            raise DataError(f"{path} has labels for one split only ({only}); give y_train and "
                            f"y_test, or neither.")
        arrays, digests = {}, {}
        for key in ("x_train", "x_test", "y_train", "y_test"):  # images first: their counts
            if key in members:  # bound the labels' size before those are read
                expected = len(arrays[f"x_{key[2:]}"]) if key.startswith("y") else None
                arrays[key], digests[key] = _read_member(archive, members[key], path, key,
                                                         budget, key.startswith("x"), expected)
    layouts = {key: image_layout(arrays[key].shape, f"{path}: {key}")
               for key in ("x_train", "x_test")}
    if layouts["x_train"] != layouts["x_test"]:
        raise DataError(f"{path}: x_train holds {layouts['x_train']} images but x_test "
                        f"{layouts['x_test']}; both splits need the same image shape.")
    labels = {}
    for split in ("train", "test"):
        if len(arrays[f"x_{split}"]) == 0:
            raise DataError(f"{path}: x_{split} holds no images: the {split} split is empty.")
        y = arrays.get(f"y_{split}")
        labels[split] = None if y is None else check_labels(
            y, len(arrays[f"x_{split}"]), f"{path}: y_{split}")
    return ImageSet(arrays["x_train"], labels["train"], arrays["x_test"], labels["test"],
                    image_shape=layouts["x_train"], name=safe_name(path.stem),
                    source=str(path.resolve()),
                    fingerprint=combine_digests(*sorted(digests.items())))


def _read_member(archive, member, path, key, budget, images, expected=None):
    """One array of the archive: images row block by row block into a budget sink (uint8, or
    float32 checked to lie in [0, 1], with 1-channel images given their channel axis); labels
    whole, once their shape is checked against the ``expected`` number of images."""
    where = f"{path}: {key}"
    digest = hashlib.sha256()
    try:
        with archive.open(member) as f:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = header(f)
            if dtype.hasobject:
                raise DataError(f"{where} holds Python objects; store numbers (uint8 images, "
                                f"integer labels).")
            if not images:  # their shape checked before they are read: a few bytes of a
                if len(shape) not in (1, 2) or (len(shape) == 2 and 1 not in shape):  # zip can
                    raise DataError(f"{where}: labels must be one integer per image, shape "
                                    f"({expected},); got shape {shape}.")  # declare gigabytes
                if int(np.prod(shape)) != expected:
                    raise DataError(f"{where}: {expected} images but {int(np.prod(shape))} "
                                    f"labels; give one label per image.")
                raw = f.read(int(np.prod(shape)) * dtype.itemsize + 1)
                if len(raw) != int(np.prod(shape)) * dtype.itemsize:
                    raise DataError(f"{where} is truncated or has trailing bytes.")
                digest.update(raw)
                values = np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C")
                return values, digest.hexdigest()
            layout = image_layout(shape, where)
            if dtype != np.uint8 and dtype.kind != "f":
                raise DataError(f"{where}: images must be uint8 (0..255) or float in [0, 1], got "
                                f"{dtype.name}.")
            if fortran:  # rare (numpy writes C order): read it whole, then row by row
                if not budget.take(int(np.prod(shape)) * dtype.itemsize):
                    raise DataError(f"{where} is stored in Fortran order, which is read whole, "
                                    f"and does not fit --memory_budget; save it in C order "
                                    f"(numpy.ascontiguousarray) or raise --memory_budget.")
                whole = np.frombuffer(f.read(int(np.prod(shape)) * dtype.itemsize), dtype)
                whole = whole.reshape(shape, order="F")
                return _stream(lambda: _blocks_of(whole), shape[0], layout, dtype, budget, where,
                               digest)

            def blocks():
                yield from row_blocks(f, shape, dtype, where)
                if f.read(1):
                    raise DataError(f"{where} holds more data than its header declares.")
            return _stream(blocks, shape[0], layout, dtype, budget, where, digest)
    except (OSError, EOFError, ValueError, zlib.error, zipfile.BadZipFile) as e:
        if isinstance(e, Error):  # the data's own fault (DataError) or the spill's (WriteError)
            raise
        raise DataError(f"{where} cannot be read ({type(e).__name__}: {e}); the file is "
                        f"truncated or corrupt.") from None


def _blocks_of(array, rows=4096):
    for start in range(0, len(array), rows):
        yield array[start:start + rows]


def _stream(blocks, count, layout, dtype, budget, where, digest):
    stored = np.uint8 if dtype == np.uint8 else np.float32
    with budget.sink(layout, stored, count) as sink:
        for block in blocks():
            block = check_pixels(np.asarray(block), where).reshape(len(block), *layout)
            digest.update(np.ascontiguousarray(block).data)
            sink.write(block)
    return sink.finish(), digest.hexdigest()
