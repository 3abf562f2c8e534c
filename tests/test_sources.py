"""Every data source on files the tests write in the real formats, the memory budget, the
evaluation subsets of any dataset, and each bad input with its message."""

import gc
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import makedata
from conftest import ROOT
from tfp_vae import data, sources
from tfp_vae.sources import DataError, DiskArray, idx


# ------------------------------------------------------------------------------------------- IDX
def test_idx_folder_of_any_shape_and_class_count(tmp_path, caplog):
    folder, (xtr, ytr, xte, yte) = makedata.idx_folder(tmp_path / "shapes")
    with caplog.at_level("INFO", logger="tfp_vae"):
        dataset = sources.load(data_dir=folder)
    assert "is not a known dataset" in caplog.text
    assert dataset.image_shape == (32, 32, 1) and dataset.num_classes == 3
    assert dataset.name == "shapes" and not dataset.reference
    np.testing.assert_array_equal(dataset.train_images[..., 0], xtr)
    np.testing.assert_array_equal(dataset.test_labels, yte)
    assert np.bincount(dataset.train_labels).tolist() == [30, 20, 10]


def test_canonical_mnist_files_are_recognised_and_verified(tmp_path, mnist):
    for name, *_ in idx.MNIST_FILES.values():
        shutil.copy(idx.BUNDLED_DIR / name, tmp_path / name)
    copy = sources.load(data_dir=tmp_path)  # no --dataset: detected by names and sizes
    assert copy.reference and copy.name == "mnist" and copy.fingerprint == mnist.fingerprint
    # Same names and sizes, other content: refused by the checksum, with the way past it.
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[100] = (raw[100] + 1) % 10
    path.write_bytes(gzip.compress(bytes(raw), mtime=0))
    assert path.stat().st_size in idx.MNIST_FILES["test_labels"][2]  # the size still claims MNIST
    with pytest.raises(DataError, match="--noverify_checksums"):
        sources.load(data_dir=tmp_path)


def test_mnist_layout_with_other_content_trains_as_its_own_dataset(tmp_path):
    # Fashion-MNIST and others share MNIST's names but not its files: no checksum refusal.
    folder, _ = makedata.idx_folder(tmp_path / "fashion", (5, 5, 5, 5, 5, 5, 5, 5, 5, 5),
                                    (2,) * 10, shape=(28, 28))
    dataset = sources.load(data_dir=folder)
    assert not dataset.reference and dataset.num_classes == 10


def test_uncompressed_idx_above_the_budget_is_read_in_place(tmp_path):
    folder, (xtr, _, xte, _) = makedata.idx_folder(tmp_path / "raw", compress=False)
    dataset = sources.load(data_dir=folder, memory_budget="1KiB")
    assert isinstance(dataset.train_images, DiskArray)
    assert dataset.train_images.path == str(folder / "train-images-idx3-ubyte")
    np.testing.assert_array_equal(dataset.train_images[[5, 2, 3, 40]][..., 0], xtr[[5, 2, 3, 40]])
    np.testing.assert_array_equal(dataset.test_images[3:9][..., 0], xte[3:9])
    # The training stream reads the same batches from disk as from memory.
    in_memory = sources.load(data_dir=folder)
    assert isinstance(in_memory.train_images, np.ndarray)
    for a, b in zip(data.train_dataset(in_memory.train_images, 7, seed=1).take(12),
                    data.train_dataset(dataset.train_images, 7, seed=1).take(12)):
        np.testing.assert_array_equal(a, b)


def test_compressed_data_above_the_budget_spills_to_a_temporary_file(tmp_path):
    folder, (xtr, _, _, _) = makedata.idx_folder(tmp_path / "gz")
    dataset = sources.load(data_dir=folder, memory_budget=str(xtr.size + 100))  # train fits
    assert isinstance(dataset.train_images, np.ndarray)
    assert isinstance(dataset.test_images, DiskArray)  # what is left does not hold the test split
    path = dataset.test_images.path
    assert os.path.dirname(path) == tempfile.gettempdir() and "tfp_vae-" in path
    x, _ = data.full_test_set(dataset)
    x_memory, _ = data.full_test_set(sources.load(data_dir=folder))
    np.testing.assert_array_equal(x, x_memory)
    assert os.path.exists(path)  # kept while the array lives
    del dataset, x
    gc.collect()
    assert not os.path.exists(path)  # removed with the array


def test_decompression_stops_at_the_declared_size(tmp_path):
    folder, (xtr, ytr, _, _) = makedata.idx_folder(tmp_path / "bomb")
    # A header that declares 60 images, followed by far more data (a "zip bomb" of zeros).
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in xtr.shape)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + xtr.tobytes())
        for _ in range(64):
            f.write(bytes(1 << 20))
    with pytest.raises(DataError, match="holds more data than the shape"):
        sources.load(data_dir=folder)
    # A header that declares more than a gzip file of that size can hold.
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(
        bytes([0, 0, 8, 3]) + (10 ** 6).to_bytes(4, "big") + (10 ** 4).to_bytes(4, "big") * 2))
    with pytest.raises(DataError, match="more than a .*-byte gzip file can hold"):
        sources.load(data_dir=folder)


@pytest.mark.parametrize("ndim", [2, 255])
def test_idx_with_a_wrong_number_of_dimensions_is_named_briefly(tmp_path, ndim):
    folder, _ = makedata.idx_folder(tmp_path / "dims")
    (folder / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(bytes([0, 0, 8, ndim]) + (1).to_bytes(4, "big") * ndim + b"\1"))
    with pytest.raises(DataError) as e:
        sources.load(data_dir=folder)
    assert f"declares {ndim} dimensions" in str(e.value) and len(str(e.value)) < 300


# ------------------------------------------------------------------------------------------- npz
def test_npz_in_keras_convention(tmp_path):
    path, arrays = makedata.npz_file(tmp_path / "colour.npz")
    dataset = sources.load(data_dir=path)
    assert dataset.image_shape == (16, 16, 3) and dataset.num_classes == 3
    np.testing.assert_array_equal(dataset.test_images, arrays["x_test"])
    assert sources.load(data_dir=tmp_path).fingerprint == dataset.fingerprint  # folder of one
    # Grey (N, H, W) float images in [0, 1], no labels.
    grey = np.random.RandomState(0).rand(10, 7, 9).astype(np.float32)
    path, _ = makedata.npz_file(tmp_path / "grey.npz", compressed=False, x_train=grey,
                                x_test=grey[:4], y_train=None, y_test=None)
    dataset = sources.load(data_dir=path)
    assert dataset.image_shape == (7, 9, 1) and not dataset.labelled
    np.testing.assert_array_equal(data.to_unit_interval(dataset.train_images),
                                  grey.reshape(10, -1))


def test_npz_above_the_budget_streams_from_disk(tmp_path):
    path, arrays = makedata.npz_file(tmp_path / "big.npz")
    dataset = sources.load(data_dir=path, memory_budget="1KiB")
    assert isinstance(dataset.train_images, DiskArray)
    np.testing.assert_array_equal(dataset.train_images[[0, 47, 3]], arrays["x_train"][[0, 47, 3]])


@pytest.mark.parametrize("change, message", [
    ({"x_test": None, "y_test": None}, r"has no x_test array \(found: x_train, y_train\)"),
    ({"y_test": None}, "labels for one split only"),
    ({"y_train": np.linspace(0, 2, 48)}, "labels must be integers; label 1 is"),
    ({"y_train": np.array(["a"] * 48)}, "labels must be integers, got str"),
    ({"y_train": np.arange(5)}, "48 images but 5 labels"),
    ({"x_test": np.zeros((0, 16, 16, 3), np.uint8), "y_test": np.zeros(0, np.int64)},
     "x_test holds no images: the test split is empty"),
    ({"x_train": np.full((48, 16, 16, 3), 2.0)}, r"float images must lie in \[0, 1\]"),
    ({"x_train": np.zeros((48, 16, 16, 5), np.uint8)}, "1 \\(grey\\) or 3 \\(RGB\\) channels"),
    ({"x_train": np.zeros((48, 16, 16), np.int32)}, "must be uint8"),
    ({"x_test": np.zeros((18, 8, 8, 3), np.uint8)}, "both splits need the same image shape"),
])
def test_bad_npz_files_are_named_with_the_fix(tmp_path, change, message):
    path, _ = makedata.npz_file(tmp_path / "bad.npz", **change)
    with pytest.raises(DataError, match=message):
        sources.load(data_dir=path)


def test_npz_of_python_objects_is_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "obj.npz", x_train=np.array([object()] * 3), x_test=np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match="holds Python objects"):
        sources.load(data_dir=tmp_path / "obj.npz")


# ------------------------------------------------------------------------------ image folders
def test_png_folder_with_a_held_out_test_split(tmp_path):
    folder, written = makedata.png_folder(tmp_path / "pets")
    dataset = sources.load(data_dir=folder)
    assert dataset.class_names == ("cat", "dog", "emu") and dataset.image_shape == (20, 20, 1)
    # A tenth of each class, rounded down, is held out: 1 + 1 + 2 test images.
    assert np.bincount(dataset.test_labels).tolist() == [1, 1, 2]
    assert np.bincount(dataset.train_labels).tolist() == [14, 11, 18]
    again = sources.load(data_dir=folder)
    np.testing.assert_array_equal(again.test_images, dataset.test_images)  # the rule is fixed
    pictures = {p.tobytes() for p in written.values()}
    assert all(img[..., 0].tobytes() in pictures for img in dataset.test_images)


def test_png_folder_with_train_and_test_and_colour(tmp_path):
    from PIL import Image
    folder, _ = makedata.png_folder(tmp_path / "split", counts=(4, 3), test_counts=(2, 2))
    dataset = sources.load(data_dir=folder)
    assert (len(dataset.train_images), len(dataset.test_images)) == (7, 4)
    rgb = tmp_path / "rgb" / "a"
    rgb.mkdir(parents=True)
    for i in range(12):
        Image.new("RGBA", (5, 4), (i, 2 * i, 3 * i, 255)).save(rgb / f"{i}.png")
    (rgb / "notes.txt").write_text("not an image")  # ignored, as Keras does
    dataset = sources.load(data_dir=tmp_path / "rgb")
    assert dataset.image_shape == (4, 5, 3) and dataset.num_classes == 1


def test_bad_image_folders_name_the_file(tmp_path):
    from PIL import Image
    folder, written = makedata.png_folder(tmp_path / "mixed")
    Image.new("L", (21, 20)).save(folder / "dog" / "odd.png")
    with pytest.raises(DataError, match=r"images of different sizes: .* is 20x20 but .*odd.png "
                                        r"is 21x20"):
        sources.load(data_dir=folder)
    (folder / "dog" / "odd.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="odd.png cannot be read as an image"):
        sources.load(data_dir=folder)
    Image.new("RGB", (20, 20)).save(folder / "dog" / "odd.png")
    with pytest.raises(DataError, match="is grey but .*odd.png is colour"):
        sources.load(data_dir=folder)


def test_folders_without_data_say_what_is_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no data that tfp_vae recognises"):
        sources.load(data_dir=tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        sources.load(data_dir=tmp_path / "nowhere")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match="is a file but not an .npz file"):
        sources.load(data_dir=tmp_path / "x.csv")
    with pytest.raises(DataError, match="unknown --dataset='cifar'"):
        sources.load("cifar")


# -------------------------------------------------------------------------------------- TFDS
def test_any_tfds_image_dataset_with_mock_data():
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=12):
        dataset = sources.load("tfds:fashion_mnist")
        colour = sources.load("tfds:cifar10", memory_budget="10KiB")
    assert dataset.image_shape == (28, 28, 1) and dataset.num_classes == 10
    assert dataset.class_names[0] == "T-shirt/top" and dataset.name == "tfds-fashion_mnist"
    assert len(dataset.train_images) == 12 and dataset.train_images.dtype == np.uint8
    assert colour.image_shape == (32, 32, 3) and isinstance(colour.train_images, DiskArray)
    with pytest.raises(DataError, match="TFDS does not know this dataset"):
        sources.load("tfds:no_such_dataset_here")


# -------------------------------------------------------------------- subsets of any dataset
def test_evaluation_subset_rule_and_labelled_subset(tmp_path):
    folder, _ = makedata.idx_folder(tmp_path / "s", train_counts=(30, 20, 10),
                                    test_counts=(40, 40, 5))
    dataset = sources.load(data_dir=folder)
    x, y = data.test_subset(dataset)
    # ceil(100 / 3) = 34 of each class in file order; class 2 has only 5.
    assert np.bincount(y).tolist() == [34, 34, 5] and set(np.unique(x)) <= {0.0, 1.0}
    first = np.flatnonzero(dataset.test_labels == 1)[:34]
    np.testing.assert_array_equal(data.test_subset(dataset, binarized=False)[0][34:68],
                                  data.to_unit_interval(dataset.test_images[first]))
    xl, yl = data.labelled_subset(dataset, per_class=7)
    assert np.bincount(yl).tolist() == [7, 7, 7]
    np.testing.assert_array_equal(xl, data.labelled_subset(dataset, per_class=7)[0])
    with pytest.raises(DataError, match=r"class '2' \(label 2\) of s has 10 training images, "
                                        r"fewer than --labels_per_class=11"):
        data.labelled_subset(dataset, per_class=11)


# ------------------------------------------------------------------------------- peak memory
_PEAK = """
import sys
from tfp_vae import sources  # NumPy only: no TensorFlow in the measure
dataset = sources.load(data_dir=sys.argv[1], memory_budget=sys.argv[2])
for start in range(0, len(dataset.train_images), 256):  # touch every image once
    dataset.train_images[start:start + 256].sum()
assert "tensorflow" not in sys.modules
# VmHWM: this process's peak resident memory (getrusage's maxrss carries the parent's over exec).
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(peak // 1024, type(dataset.train_images).__name__)
"""


def test_loading_keeps_within_the_memory_budget(tmp_path):
    folder = tmp_path / "large"
    folder.mkdir()
    rng = np.random.RandomState(0)
    x = np.zeros((150_000, 28, 28), np.uint8)  # 118 MB of mostly dark images
    x[:, 10:14, 10:14] = rng.randint(0, 255, (150_000, 4, 4))
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in x.shape)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
        f.write(header + x.tobytes())
    makedata.write_idx(folder / "t10k-images-idx3-ubyte.gz", x[:100])
    peaks = {}
    for budget in ("8MiB", "1GiB"):
        out = subprocess.run([sys.executable, "-c", _PEAK, str(folder), budget],
                             capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert out.returncode == 0, out.stderr[-2000:]
        peak, kind = out.stdout.split()
        peaks[budget] = (int(peak), kind)
    assert peaks["8MiB"][1] == "DiskArray" and peaks["1GiB"][1] == "ndarray"
    # In memory the 118 MB are held; within 8 MiB only a chunk of the decompression is.
    assert peaks["1GiB"][0] - peaks["8MiB"][0] > 80, peaks
    print(json.dumps(peaks))


# ------------------------------------------------------------------------------ SVHN .mat files
def _mat(path, x, y, compress=True):
    import scipy.io
    scipy.io.savemat(path, {"X": x, "y": y}, format="5", do_compression=compress)
    return path


@pytest.mark.parametrize("compress", [True, False])
def test_svhn_mat_above_the_budget_streams_to_disk(tmp_path, compress):
    from tfp_vae.sources import svhn
    rng = np.random.RandomState(0)
    x = rng.randint(0, 256, (32, 32, 3, 50)).astype(np.uint8)
    y = (np.arange(50) % 10 + 1).astype(np.uint8)[:, None]
    path = _mat(tmp_path / "extra_32x32.mat", x, y, compress)
    images, labels, digest = svhn.read_mat(path, sources.MemoryBudget("10KiB"))
    assert isinstance(images, DiskArray) and images.shape == (50, 32, 32, 3)
    np.testing.assert_array_equal(images[[7, 49]], x[..., [7, 49]].transpose(3, 0, 1, 2))
    np.testing.assert_array_equal(labels, y.ravel() % 10)
    import hashlib
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("labels, message", [
    (np.array([[1.0], [np.nan]]), "labels must be integers; label 1 is"),
    (np.array([[1.0], [1.5]]), "labels must be integers; label 1 is"),
    (np.array([[0], [11]], np.uint8), r"labels must lie in 1..10"),
])
def test_svhn_labels_that_are_not_classes_are_refused(tmp_path, labels, message):
    from tfp_vae.sources import svhn
    path = _mat(tmp_path / "test_32x32.mat", np.zeros((32, 32, 3, 2), np.uint8), labels)
    with pytest.raises(DataError, match=message):
        svhn.read_mat(path)


def test_svhn_files_without_images_or_in_other_formats_are_refused(tmp_path):
    from tfp_vae.sources import svhn
    path = _mat(tmp_path / "test_32x32.mat", np.zeros((32, 32, 3, 0), np.uint8),
                np.zeros((0, 1), np.uint8))
    with pytest.raises(DataError, match="holds no images"):
        svhn.read_mat(path)
    (tmp_path / "v73.mat").write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(128, b" "))
    with pytest.raises(DataError, match="MATLAB 7.3 \\(HDF5\\) file"):
        svhn.read_mat(tmp_path / "v73.mat")
    (tmp_path / "text.mat").write_text("hello")
    with pytest.raises(DataError, match="truncated or corrupt|not a MATLAB 5"):
        svhn.read_mat(tmp_path / "text.mat")


def test_tfds_datasets_without_the_extra_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if not installed
    with pytest.raises(sources.DataError, match=r"needs TensorFlow Datasets, an optional part of "
                                                r"tfp_vae: pip install 'tfp_vae\[tfds\]'"):
        sources.load("tfds:mnist")


# ------------------------------------------------------------------------------ labels, classes
@pytest.mark.parametrize("labels", [np.array([0, 2**63], np.uint64), np.array([0, 2**64 - 1],
                                    np.uint64), np.array([0.0, 1e19]), np.array([0, 2**31])])
def test_labels_too_large_to_be_class_numbers_are_refused_not_wrapped(labels):
    from tfp_vae.sources import common
    with pytest.raises(DataError, match="labels must be class numbers 0..K-1 with K at most "
                                        "2,147,483,647"):
        common.check_labels(labels, 2, "data.npz")
    assert list(common.check_labels(np.array([0, 2**31 - 2], np.uint64), 2, "x")) == [0, 2**31 - 2]


def test_a_huge_class_number_costs_nothing_unconditionally_and_is_refused_conditionally():
    from tfp_vae import tasks
    from tfp_vae.errors import ConfigError
    labels = np.array([0, 1, 10**9, 1])
    dataset = sources.ImageSet(np.zeros((4, 2, 2, 1), np.uint8), labels,
                               np.zeros((4, 2, 2, 1), np.uint8), labels, image_shape=(2, 2, 1))
    assert dataset.num_classes == 10**9 + 1
    assert list(data.subset_rule(labels, dataset.num_classes)) == [0, 1, 2]  # at once
    for kind in ("ssvae", "fsvae"):
        with pytest.raises(ConfigError, match="takes at most 10,000 classes"):
            tasks.get("supervised" if kind == "fsvae" else "semisupervised").check(kind, dataset)


# ------------------------------------------------------------------------------ hostile files
def test_npz_labels_are_bounded_by_the_images_before_they_are_read(tmp_path):
    huge = np.zeros(50_000_000, np.int64)  # 400 MB of labels, 0.4 MB compressed
    path, _ = makedata.npz_file(tmp_path / "labels.npz", y_train=huge)
    with pytest.raises(DataError, match=r"y_train: 48 images but 50000000 labels"):
        sources.load(data_dir=path, memory_budget="64MiB")


def test_fortran_order_images_above_the_budget_are_refused(tmp_path):
    x = np.asfortranarray(makedata.images((16, 16, 16), (16, 16, 3), seed=3)[0])
    path, _ = makedata.npz_file(tmp_path / "f.npz", x_train=x)
    with pytest.raises(DataError, match="stored in Fortran order.*memory_budget"):
        sources.load(data_dir=path, memory_budget="1KiB")
    assert len(sources.load(data_dir=path).train_images) == 48  # within the budget: read


@pytest.mark.parametrize("source", ["npz", "folder", "idx"])
def test_a_full_temporary_folder_is_named_and_leaves_no_spill_file(tmp_path, monkeypatch,
                                                                   source):
    import errno
    from tfp_vae.sources import common

    class Full:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(common.os, "fdopen", lambda fd, mode: os.close(fd) or Full())
    path = {"npz": lambda: makedata.npz_file(tmp_path / "d.npz")[0],
            "folder": lambda: makedata.png_folder(tmp_path / "pngs")[0],
            "idx": lambda: makedata.idx_folder(tmp_path / "idx")[0]}[source]()
    spill = tmp_path / "spill"
    spill.mkdir()
    with pytest.raises(sources.common.WriteError, match=f"cannot hold the images above the "
                                                        f"memory budget in {spill} \\(No space"):
        sources.load(data_dir=path, memory_budget="1KiB", spill_dir=str(spill))
    assert list(spill.iterdir()) == []


def test_a_device_or_a_fifo_as_data_is_named_and_never_read(tmp_path):
    import signal
    with pytest.raises(DataError, match="--data_dir=/dev/zero is a character device, not a "
                                        "folder or a file"):
        sources.load(data_dir="/dev/zero")
    os.mkfifo(tmp_path / "data.npz")
    signal.alarm(60)  # a FIFO opened for reading would wait for a writer forever
    try:
        with pytest.raises(DataError, match="holds no data that tfp_vae recognises"):
            sources.load(data_dir=tmp_path)
        with pytest.raises(DataError, match="is a FIFO, not a folder or a file"):
            sources.load(data_dir=tmp_path / "data.npz")
    finally:
        signal.alarm(0)


def test_image_modes_are_read_for_what_they_are(tmp_path):
    from PIL import Image
    for label, (name, picture) in enumerate([
            ("wide.png", Image.fromarray(np.full((6, 6), 32896, np.uint16))),  # 16-bit grey
            ("grey.gif", Image.fromarray(np.full((6, 6), 77, np.uint8)).convert("P"))]):
        for i in range(10):
            (tmp_path / "d" / f"c{label}").mkdir(parents=True, exist_ok=True)
            picture.save(tmp_path / "d" / f"c{label}" / f"{i}{name[-4:]}")
    dataset = sources.load(data_dir=tmp_path / "d")
    assert dataset.image_shape == (6, 6, 1)  # the grey GIF stays grey
    values = {int(v) for v in np.unique(np.concatenate([dataset.train_images[:],
                                                          dataset.test_images[:]]))}
    assert values == {128, 77}  # 32896 / 257 = 128: scaled, not clipped to 255


def test_a_decompression_bomb_is_one_error(tmp_path, monkeypatch):
    from PIL import Image
    folder, _ = makedata.png_folder(tmp_path / "pngs")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 20x20 images are bombs now
    with pytest.raises(DataError, match="is too large to decode safely"):
        sources.load(data_dir=folder)


# ------------------------------------------------------------------------------ the pixel scale
def _digits(path, white=16):
    """scikit-learn's digits as a user saves them: uint8 values 0..16."""
    x = np.random.default_rng(0).integers(0, white + 1, (48, 8, 8)).astype(np.uint8)
    return makedata.npz_file(path, x_train=x, x_test=x[:18], y_test=np.arange(18) % 3)[0]


def test_dim_integer_images_get_a_note_and_pixel_max_reads_them_on_their_scale(tmp_path, caplog):
    path = _digits(tmp_path / "digits.npz")
    with caplog.at_level("INFO", logger="tfp_vae"):
        plain = sources.load(data_dir=path)
    assert "brightest pixel of digits is 16 of 255" in caplog.text
    assert "pass --pixel_max=16" in caplog.text
    scaled = sources.load(data_dir=path, pixel_max=16)
    np.testing.assert_array_equal(scaled.train_images,
                                  np.round(plain.train_images.astype(float) * 255 / 16))
    assert scaled.train_images.max() == 255 and scaled.fingerprint != plain.fingerprint
    on_disk = sources.load(data_dir=path, pixel_max=16, memory_budget="1KiB")
    np.testing.assert_array_equal(on_disk.train_images[:], scaled.train_images)
    with pytest.raises(DataError, match="pixels up to 16, above --pixel_max=15"):
        sources.load(data_dir=path, pixel_max=15)


def test_float_images_above_one_are_told_to_divide_by_their_white(tmp_path):
    path, _ = makedata.npz_file(tmp_path / "f.npz", x_train=np.full((48, 16, 16, 3), 16.0))
    with pytest.raises(DataError, match="divide them by the value that is white in your data"):
        sources.load(data_dir=path)
