"""MNIST loading, verification, the reference subsets and the training stream."""

import gzip
import shutil

import numpy as np
import pytest

from tfp_vae import data
from conftest import DATA


def _hex_bits(path):
    lines = path.read_text().split()
    return np.array([[int(c, 16) >> (3 - k) & 1 for c in line for k in range(4)] for line in lines],
                    np.float32)


def test_bundled_mnist_loads_with_expected_shapes(mnist):
    assert mnist.train_images.shape == (60000, 28, 28, 1) and mnist.train_images.dtype == np.uint8
    assert mnist.test_images.shape == (10000, 28, 28, 1)
    assert mnist.reference and mnist.name == "mnist" and mnist.num_classes == 10
    assert np.bincount(mnist.train_labels).tolist()[:2] == [5923, 6742]
    assert np.bincount(mnist.test_labels).sum() == 10000


def test_static_test_subset_matches_reference_bits(mnist):
    x, y = data.test_subset(mnist)
    reference = _hex_bits(DATA / "test_subset_static_bin.hex")
    assert x.shape == (100, 784)
    np.testing.assert_array_equal(x, reference)
    assert int(x.sum()) == 10257
    assert y.tolist() == [d for d in range(10) for _ in range(10)]


def test_labelled_subset_keeps_the_reference_duplicate(mnist):
    x, y = data.labelled_subset(mnist)
    assert x.shape == (100, 784) and 0 <= x.min() and x.max() <= 1
    assert np.bincount(y).tolist() == [10] * 10
    # Train digit 4 lists position 2176 twice: rows 46 and 47 are the same image.
    np.testing.assert_array_equal(x[46], x[47])
    assert len({row.tobytes() for row in x}) == 99


def test_full_test_set_is_binary_and_fixed(mnist):
    x1, y = data.full_test_set(mnist)
    x2, _ = data.full_test_set(mnist)
    assert x1.shape == (10000, 784) and set(np.unique(x1)) == {0.0, 1.0}
    np.testing.assert_array_equal(x1, x2)
    assert (y == mnist.test_labels).all()


@pytest.fixture
def mnist_copy(tmp_path):
    for name, *_ in data.MNIST_FILES.values():
        shutil.copy(data.BUNDLED_DIR / name, tmp_path / name)
    return tmp_path


def test_data_dir_reads_the_same_files(mnist_copy, mnist):
    other = data.load_mnist(mnist_copy)
    np.testing.assert_array_equal(other.test_images, mnist.test_images)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.load_mnist(tmp_path / "nowhere")


def test_missing_file_is_a_clear_error(mnist_copy):
    (mnist_copy / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz is missing"):
        data.load_mnist(mnist_copy)


def test_truncated_file_is_a_clear_error(mnist_copy):
    path = mnist_copy / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(data.DataError, match="truncated or corrupt"):
        data.load_mnist(mnist_copy)


def test_corrupt_content_is_caught_by_the_checksum(mnist_copy):
    path = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # Still a valid IDX file with labels in range.
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(data.DataError, match="expected content"):
        data.load_mnist(mnist_copy)
    # Without the checksum the structure is still checked, and this file passes.
    data.load_mnist(mnist_copy, verify_checksums=False)


def test_wrong_shape_idx_is_a_clear_error(mnist_copy):
    path = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:4] + (5000).to_bytes(4, "big") + raw[8:5008]))
    with pytest.raises(data.DataError, match=r"shape \(5000,\), expected \(10000,\)"):
        data.load_mnist(mnist_copy, verify_checksums=False)


def test_train_stream_batches_epochs_and_binarisation():
    images = (np.arange(10)[:, None] * np.ones((1, 6)) * 25).astype(np.uint8)  # 10 images
    ds = data.train_dataset(images, batch_size=4, seed=3, binarized=False)
    batches = [b.numpy() for b in ds.take(6)]
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]  # drop_last=False: partial batch kept
    epoch1 = np.concatenate(batches[:3])[:, 0]
    epoch2 = np.concatenate(batches[3:])[:, 0]
    assert sorted(epoch1) == sorted(epoch2) == sorted(data.to_unit_interval(images)[:, 0])
    assert not np.array_equal(epoch1, epoch2)  # reshuffled every epoch
    binary = [b.numpy() for b in data.train_dataset(images, 4, 3).take(6)]
    assert set(np.unique(np.concatenate(binary))) <= {0.0, 1.0}


def test_train_stream_restarts_exactly_at_any_step():
    images = np.random.RandomState(0).randint(0, 256, (10, 8)).astype(np.uint8)
    full = [b.numpy() for b in data.train_dataset(images, 4, seed=5).take(9)]
    resumed = [b.numpy() for b in data.train_dataset(images, 4, seed=5, start_step=4).take(5)]
    for a, b in zip(full[4:], resumed):
        np.testing.assert_array_equal(a, b)


def test_binarisation_is_fresh_every_step():
    gray = np.full((4, 1000), 128, np.uint8)
    a, b = [x.numpy() for x in data.train_dataset(gray, 4, seed=0).take(2)]
    assert 0.45 < a.mean() < 0.55 and not np.array_equal(np.sort(a, 0), np.sort(b, 0))


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 10)), r"shape \(N, 784\)"),
    (np.full((3, 784), np.nan), "NaN"),
    (np.full((3, 784), 255.0), r"\[0, 1\]"),
])
def test_check_images_names_the_problem(bad, message):
    with pytest.raises(data.DataError, match=message):
        data.check_images(bad)


def test_labels_out_of_range_are_a_clear_error(mnist_copy):
    path = mnist_copy / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[8 + 17] = 12  # a label 12 in an otherwise valid file
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(data.DataError, match=r"train labels in .* are outside 0\.\.9"):
        data.load_mnist(mnist_copy, verify_checksums=False)


def test_the_old_source_argument_of_load_mnist_is_refused():
    with pytest.raises(TypeError, match="takes no source"):
        data.load_mnist(None, "tfds")


def test_training_streams_run_without_tf_data_autotuning():
    """Destroying an autotuned stream's iterator after fit sometimes waited seconds inside the
    garbage collection (tfp_vae.data._STREAM_OPTIONS); both streams must keep it off."""
    images = np.zeros((6, 4), np.uint8)
    plain = data.train_dataset(images, 2, seed=0)
    labelled = data.semisupervised_dataset(images, np.arange(6) % 2, images[:2].astype(np.float32),
                                           np.array([0, 1]), 2, seed=0)
    assert plain.options().autotune.enabled is False
    assert labelled.options().autotune.enabled is False


def test_the_validation_split_is_disjoint_fixed_and_the_curve_is_drawn_on_it(mnist):
    """The papers' 50,000 / 10,000: held out by one seeded rule, the same on every call, apart
    from the training images and from the test split; the validation curve uses it."""
    split = data.hold_out(mnist, 10_000)
    again = data.hold_out(mnist, 10_000)
    assert len(split.train_images) == 50_000 and len(split.validation_images) == 10_000
    np.testing.assert_array_equal(split.validation_images, again.validation_images)
    flat = mnist.train_images.reshape(60_000, -1)
    held = {row.tobytes() for row in split.validation_images.reshape(10_000, -1)}
    kept = {row.tobytes() for row in split.train_images.reshape(50_000, -1)}
    assert held | kept == {row.tobytes() for row in flat}  # every image on one side...
    assert len(held & kept) <= 10  # ...but for MNIST's few duplicate images
    order = np.random.default_rng(0).permutation(60_000)
    np.testing.assert_array_equal(split.validation_labels,
                                  mnist.train_labels[np.sort(order[:10_000])])
    x, labels = data.validation_set(split, binarized=False)
    assert x.shape == (10_000, 784) and np.array_equal(labels, split.validation_labels)
    assert split.test_images is mnist.test_images and split.held_out == 10_000
    # The SSVAE's labelled images come from the kept images (drawn by the general rule).
    xl, _ = data.labelled_subset(split)
    assert {row.tobytes() for row in (xl * 255).round().astype(np.uint8)} <= kept
    with pytest.raises(data.DataError, match="must hold out fewer images than the 60,000"):
        data.hold_out(mnist, 60_000)


def test_a_split_of_images_on_disk_stays_on_disk(tmp_path):
    images = np.arange(20 * 4, dtype=np.uint8).reshape(20, 2, 2, 1)
    path = tmp_path / "rows.bin"
    images.tofile(path)
    disk = data.DiskArray(str(path), 0, images.shape)
    dataset = data.ImageSet(disk, None, images[:3], None, image_shape=(2, 2, 1))
    split = data.hold_out(dataset, 5)
    assert isinstance(split.train_images, data.Rows) and len(split.train_images) == 15
    order = np.sort(np.random.default_rng(0).permutation(20)[5:])
    np.testing.assert_array_equal(split.train_images[np.arange(15)], images[order])
    batch = next(iter(data.train_dataset(split.train_images, 15, seed=0, binarized=False)))
    drawn = sorted(map(tuple, (batch.numpy() * 255).round()))
    assert drawn == sorted(map(tuple, images[order].reshape(15, 4).astype(float)))
