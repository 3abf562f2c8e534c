"""tfp_vae.pictures and tfp_vae.images: pictures of any class count, image size, z and test
split, each within a size PNG encoders and TensorBoard accept."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_vae import images, models, pictures


def _shape(path):
    return tuple(tf.io.decode_png(tf.io.read_file(str(path))).shape)


@pytest.mark.parametrize("dims, n", [(1, 200), (1, 1), (2, 1), (10, 1), (10, 2), (3, 200)])
def test_the_latent_view_draws_any_z_and_any_number_of_images(tmp_path, dims, n):
    means = np.random.default_rng(0).normal(size=(n, dims))
    for labels, classes in ((np.arange(n) % 3, 3), (None, 0), (np.arange(n) % 1000, 1000)):
        path = pictures.latent_view(means, labels, tmp_path / "latent.png", classes)
        assert _shape(path)[:2] == (400, 640)


def test_small_images_are_enlarged_and_separated_and_mnist_is_drawn_as_the_reference():
    grid = images.tile(np.ones((6, 64)), 2, 3, 8, 8, 1)
    assert grid.shape == (2 * 32 + 2, 3 * 32 + 2 * 2, 1)  # 8 px x 4, a 2 px grey line between
    assert grid[32, 0, 0] == 0.5 and grid[0, 32, 0] == 0.5 and grid[31, 31, 0] == 1.0
    assert images.tile(np.ones((200, 784)), 10, 20).shape == (280, 560, 1)


def test_a_picture_larger_than_the_cap_is_shrunk_and_a_thousand_classes_fit(tmp_path):
    confusion = np.eye(1000) * 7
    path = images.write_png(tmp_path / "confusion.png", images.heatmap(confusion))
    assert max(_shape(path)) <= images.MAX_SIDE
    path = images.write_png(tmp_path / "big.png", np.ones((9000, 100, 1)))
    assert _shape(path) == (3000, 34, 1)  # shrunk 3 times (ceil(9000 / 4096))
    assert list(images.shown_classes(10)) == list(range(10))
    shown = images.shown_classes(1000)
    assert len(shown) == 20 and shown[0] == 0 and shown[-1] == 999


def test_a_conditional_model_of_many_classes_pictures_twenty_rows(tmp_path):
    model = models.FSVAE(z_dim=2, image_shape=(4, 4, 1), num_classes=300)
    drawn, rows, cols = model.sample_grid(seed=[0, 1])
    assert (rows, cols) == (20, 20) and np.asarray(drawn).shape == (400, 16)
    path = images.write_png(tmp_path / "s.png", images.tile(np.asarray(drawn), rows, cols, 4, 4))
    assert _shape(path) == (20 * 30 - 2, 20 * 30 - 2, 1)
