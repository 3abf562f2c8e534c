"""Small datasets written by the tests in the real formats: IDX (gzip), Keras .npz, PNG folders."""

import gzip
import pathlib

import numpy as np


def images(counts, shape, seed=0):
    """Images (sum(counts), *shape) uint8 whose class c is a recognisable pattern (a bright band
    at a class-dependent place) plus noise, and their labels, classes in an interleaved order."""
    rng = np.random.RandomState(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    labels = labels[rng.permutation(len(labels))]
    h = shape[0]
    x = rng.randint(0, 60, (len(labels), *shape)).astype(np.uint8)
    for i, c in enumerate(labels):
        band = slice(c * h // len(counts), (c + 1) * h // len(counts))
        x[i, band] = 220
    return x, labels.astype(np.uint8)


def write_idx(path, array, compress=True):
    """``array`` (uint8) as an IDX file (gzip-compressed when ``compress``)."""
    array = np.asarray(array, np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                      for d in array.shape) + array.tobytes()
    pathlib.Path(path).write_bytes(gzip.compress(raw) if compress else raw)
    return path


def idx_folder(folder, train_counts=(30, 20, 10), test_counts=(12, 8, 5), shape=(32, 32),
               compress=True):
    """A dataset in MNIST's IDX layout: train/t10k images and labels."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    xtr, ytr = images(train_counts, shape, seed=1)
    xte, yte = images(test_counts, shape, seed=2)
    write_idx(folder / f"train-images-idx{len(shape) + 1}-ubyte{suffix}", xtr, compress)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", ytr, compress)
    write_idx(folder / f"t10k-images-idx{len(shape) + 1}-ubyte{suffix}", xte, compress)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", yte, compress)
    return folder, (xtr, ytr, xte, yte)


def npz_file(path, train_counts=(16, 16, 16), test_counts=(6, 6, 6), shape=(16, 16, 3),
             compressed=True, **replace):
    """A Keras-convention .npz (x_train, y_train, x_test, y_test); ``replace`` overrides or
    (with None) drops arrays."""
    xtr, ytr = images(train_counts, shape, seed=3)
    xte, yte = images(test_counts, shape, seed=4)
    arrays = {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}
    arrays.update(replace)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return pathlib.Path(path), arrays


def png_folder(folder, counts=(15, 12, 20), shape=(20, 20), classes=("cat", "dog", "emu"),
               test_counts=None):
    """PNG files in one subfolder per class (and a test/ split when ``test_counts``)."""
    from PIL import Image
    folder = pathlib.Path(folder)
    splits = [("", counts, 5)] if test_counts is None else [("train", counts, 5),
                                                            ("test", test_counts, 6)]
    written = {}
    for split, split_counts, seed in splits:
        x, y = images(split_counts, shape, seed)
        for i, (picture, label) in enumerate(zip(x, y)):
            path = folder / split / classes[label] / f"img{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture.squeeze()).save(path)
            written[path] = picture
    return folder, written
