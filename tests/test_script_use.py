"""What a script can get wrong, refused with an error that names it instead of a silent wrong
result or an error from deep inside TensorFlow (faults found by using the library from a
script)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_vae import data, errors, models

SHAPE = (4, 4, 1)
X = np.random.default_rng(0).random((6, 16)).astype(np.float32)


def tiny(kind=models.VAE, **kwargs):
    return kind(z_dim=2, image_shape=SHAPE, **kwargs)


@pytest.mark.parametrize("call", [
    lambda m: m.fit(X, sample_weight=np.zeros(6), verbose=0),  # Keras drops it without y
    lambda m: m.fit(X, X[:, 0], class_weight={0: 1.0}, verbose=0),
    lambda m: m.fit(tf.data.Dataset.from_tensor_slices((X, X[:, 0], np.ones(6))).batch(3),
                    verbose=0),  # a third element in the data's tuples
    lambda m: m.evaluate(X, sample_weight=np.ones(6), verbose=0),
])
def test_sample_weights_are_refused_not_dropped(call):
    model = tiny()
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="weigh every example alike"):
        call(model)


def test_loss_is_the_mean_over_examples_when_an_epoch_ends_in_a_partial_batch():
    """Batches of 4 and 2: Keras' own convention (the loss tracker weighted by the batch's size),
    so that the loss equals the nelbo without warm-up or free bits."""
    model = tiny()
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    history = model.fit(X, batch_size=4, verbose=0).history
    np.testing.assert_allclose(history["loss"], history["nelbo"], rtol=1e-6)


@pytest.mark.parametrize("given", [{"loss": "mse"}, {"metrics": ["mae"]}])
def test_a_compiled_loss_or_metric_is_refused_and_a_keras_file_recompiles(given, tmp_path):
    model = tiny()
    model.compile(optimizer="adam", **given)
    with pytest.raises(ValueError, match=f"compile it without {next(iter(given))}"):
        model.fit(X, verbose=0)
    model.compile(optimizer="adam")
    model.fit(X, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.compiled  # compile is Keras' own, so the file recompiles it
    loaded.fit(X, verbose=0)


@pytest.mark.parametrize("policy", ["mixed_float16", "float64"])
def test_a_dtype_policy_other_than_float32_is_refused(policy):
    keras.config.set_dtype_policy(policy)
    try:
        with pytest.raises(ValueError, match=f"compute in float32.*'{policy}'"):
            tiny()
    finally:
        keras.config.set_dtype_policy("float32")
    with pytest.raises(ValueError, match="'float64'"):
        tiny(dtype="float64")


def test_the_vampprior_refuses_k_and_names_pseudo_inputs():
    with pytest.raises(ValueError, match="pass pseudo_inputs=7"):
        tiny(models.VampPrior, k=7)
    assert tiny(models.VampPrior, pseudo_inputs=7).pseudo_inputs == 7


@pytest.mark.parametrize("call, message", [
    (lambda m: tiny(seed=2 ** 32), r"seed must be a whole number in 0..2147483647"),
    (lambda m: m.sample(2, seed=2 ** 32), "a seed is a whole number"),  # was seed 0
    (lambda m: m.sample(2, seed=1.5), "a seed is a whole number"),  # was seed 1
    (lambda m: m.negative_elbo(X, seed=[1, 2, 3]), "a seed is a whole number"),
])
def test_seeds_that_would_wrap_or_truncate_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny())
    model = tiny()
    np.testing.assert_array_equal(model.sample(2, seed=(3, 4.0))["x"],
                                  model.sample(2, seed=[3, 4])["x"])
    traced = tf.function(lambda s: model.sample(2, seed=[s, 4])["x"])  # tensors pass as they are
    np.testing.assert_array_equal(traced(tf.constant(3)), model.sample(2, seed=[3, 4])["x"])


@pytest.mark.parametrize("kind", [models.FSVAE, models.SSVAE])
def test_labels_outside_the_classes_are_refused_in_a_script(kind):
    """Before: a row of zeros for the one-hot, and numbers that meant nothing."""
    model = tiny(kind, num_classes=3)
    with pytest.raises(ValueError, match=r"labels must lie in 0..2, got min 9 and max 9"):
        model.negative_elbo(X, np.full(6, 9), seed=0)
    with pytest.raises(ValueError, match="one-hot labels must be rows of 3"):
        model.negative_elbo(X, np.eye(4, dtype=np.float32)[[0, 1, 2, 0, 1, 2]], seed=0)
    with pytest.raises(ValueError, match=r"labels must lie in 0..2"):
        model.sample(2, y=7, seed=0)
    with pytest.raises(ValueError, match="one class for all draws or 2 labels, got 3"):
        model.sample(2, y=[0, 1, 2], seed=0)


def test_the_ssvaes_labelled_bounds_take_one_hot_labels_as_integers():
    model = tiny(models.SSVAE, num_classes=3)
    labels = np.array([0, 1, 2, 0, 1, 2])
    one_hot = np.eye(3, dtype=np.float32)[labels]
    for bound in (lambda y: model.negative_elbo(X, y, seed=0),
                  lambda y: model.negative_iwae(X, 3, y, seed=0)):
        np.testing.assert_array_equal(bound(one_hot).value, bound(labels).value)


def test_the_ssvae_refuses_to_fit_what_its_loss_would_not_use():
    model = tiny(models.SSVAE, num_classes=3)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="labels of \\(images, labels\\) pairs would not enter"):
        model.fit(X, np.array([0, 1, 2, 0, 1, 2]), verbose=0)
    model = tiny(models.SSVAE, num_classes=3, gw=0)
    model.compile(optimizer="adam")
    for call in (model.fit, model.evaluate):  # before: evaluate returned {} with a warning
        with pytest.raises(ValueError, match="with gw=0 the SSVAE has no bound"):
            call(X, verbose=0)
    assert set(model.evaluate(X, np.array([0, 1, 2, 0, 1, 2]), verbose=0,
                              return_dict=True)) == {"loss", "ce", "acc"}


MNIST_200 = None


def _images():
    global MNIST_200
    if MNIST_200 is None:
        MNIST_200 = data.load_mnist().train_images[:200]
    return MNIST_200


@pytest.mark.parametrize("images, batch_size, labels, message", [
    (lambda x: x.astype(np.int32), 50, None, "int32 images with values in \\[0, 255\\]: pass "
                                             "8-bit images as uint8"),
    (lambda x: x.astype(np.float32), 50, None, "found values in \\[0, 255\\]"),
    (lambda x: np.full((4, 4), np.nan, np.float32), 2, None, "NaN or infinite values"),
    (lambda x: x[:0], 50, None, "no training images"),
    (lambda x: x, 2.5, None, "batch_size must be a whole number >= 1, got 2.5"),
    (lambda x: x, 50, np.zeros(3), "3 labels for 200 training images"),
])
def test_the_training_stream_refuses_pixels_it_would_binarise_wrongly(images, batch_size,
                                                                     labels, message):
    """Before: int32 images or float pixels in 0..255 became all ones."""
    with pytest.raises(errors.DataError, match=message):
        data.train_dataset(images(_images()), batch_size, 0, labels=labels)


def test_the_ssvae_stream_scales_uint8_labelled_images_and_needs_some():
    x, labels = _images(), np.arange(200) % 10
    first = [next(iter(data.semisupervised_dataset(x, labels, xl, labels[:20], 50, 0,
                                                   binarized=False)))["x_labelled"].numpy()
             for xl in (x[:20], x[:20].astype(np.float32) / 255)]
    np.testing.assert_allclose(first[0], first[1], rtol=1e-6)
    with pytest.raises(errors.DataError, match="needs labelled images"):
        data.semisupervised_dataset(x, labels, x[:0], labels[:0], 50, 0)


def test_the_training_stream_takes_unit_interval_floats_as_uint8():
    x = _images()
    batches = [next(iter(data.train_dataset(images, 50, 0))).numpy()
               for images in (x, x.astype(np.float32) / np.float32(255))]
    np.testing.assert_array_equal(batches[0], batches[1])


def test_a_run_leaves_the_scripts_settings_and_global_random_states_as_they_were(tmp_path):
    """One Settings object may start several runs (each resolves a copy: before, the first run's
    likelihood and defaults stuck to it), and the run's seeding does not reset the script's
    Python and NumPy random streams."""
    import random

    import conftest
    from tfp_vae import train
    settings = train.Settings(model="vae", iter_max=2, iter_save=2, log_every=2,
                              out_dir=str(tmp_path), **conftest.QUIET)
    random.seed(7), np.random.seed(7)
    expected = random.random(), np.random.random()
    random.seed(7), np.random.seed(7)
    train.run(settings)
    assert (random.random(), np.random.random()) == expected
    assert (settings.likelihood, settings.z, settings.batch_size) == ("auto", None, None)


@pytest.mark.parametrize("net, message", [
    ("encoder", "returns a tensor of 3 values per example; the model needs a tensor of 4"),
    ("decoder", "returns a tensor of 15 values per example; the model needs a tensor of 16"),
])
def test_your_network_of_the_wrong_width_is_refused_when_the_model_is_built(net, message):
    """Before: a reshape error inside the first bound."""
    layers = {"encoder": [keras.layers.Flatten(), keras.layers.Dense(3)],
              "decoder": [keras.layers.Dense(15)]}[net]
    with pytest.raises(ValueError, match=message):
        tiny(**{net: keras.Sequential(layers)})


@pytest.mark.parametrize("call, message", [
    (lambda: tiny(models.GMVAE, k=3).sample_components([5], 2), r"components must lie in 0..2"),
    (lambda: tiny(models.GMVAE, k=3).sample_components([0], 2.5), "n must be a whole number"),
    (lambda: tiny(models.GMVAE, k=3).generate(np.zeros((2, 2), np.float32)), "pass u"),
    (lambda: tiny(models.FSVAE, num_classes=3).class_grid(-1), "columns must be a whole number"),
    (lambda: tiny().interpolate(X[:1], X[1:2], steps=0), "steps must be a whole number >= 2"),
    (lambda: tiny().interpolate(X[:1], X[1:2], steps=2.5), "steps must be a whole number"),
])
def test_counts_and_components_of_the_methods_are_checked(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("call, message", [
    (lambda d: data.hold_out(d, 50.5), "--validation must be a whole number"),
    (lambda d: data.hold_out(d, True), "--validation must be a whole number"),
    (lambda d: data.labelled_subset(d, per_class=0), "--labels_per_class must be a whole number"),
])
def test_the_splits_take_whole_numbers(call, message):
    with pytest.raises(errors.DataError, match=message):
        call(data.load_mnist())
    assert len(data.hold_out(data.load_mnist(), 50.0).validation_images) == 50


def test_a_loaded_savedmodel_takes_image_layouts_and_int_seeds_as_the_keras_model():
    """saved.SavedVAE (bin/evaluate's view of an export): (B, H, W, C) float images and an int
    seed as a Keras model takes them; uint8 images are refused with the reason."""
    from tfp_vae import pretrained, saved
    model = saved.SavedVAE(pretrained.path("vae"))
    x = data.load_mnist().test_images[:5]
    unit = (x / 255).astype(np.float32)
    np.testing.assert_array_equal(model.negative_elbo(unit, seed=3)[0],
                                  model.negative_elbo(unit.reshape(5, -1), seed=[3, 0])[0])
    assert model.embed(unit).shape == (5, 10)
    with pytest.raises(ValueError, match="takes float images in \\[0, 1\\], got uint8"):
        model.negative_elbo(x, seed=3)
    with pytest.raises(ValueError, match="takes a batch of images of shape"):
        model.embed(np.zeros((2, 392), np.float32))  # would be one image of 784 pixels
    with pytest.raises(ValueError, match="a seed is a whole number"):
        model.negative_elbo(unit, seed=[2 ** 32, 0])  # would be seed (0, 0)


@pytest.mark.parametrize("train_labels, test_labels, missing", [
    ([0, 10, 20, 10], [0, 10, 20, 0], "none of 18 of them \\(labels 1, 2, 3"),  # gaps
    ([0, 1, 0, 1], [0, 1, 2, 3], "none of 2 of them \\(labels 2, 3\\)"),  # test-only classes
])
def test_the_labelled_models_refuse_classes_without_training_images(train_labels, test_labels,
                                                                     missing):
    """Before: the FSVAE trained on '21 classes', 18 of them empty, and scored its conditional
    samples of those too."""
    from tfp_vae import sources, tasks
    images = np.zeros((4, 2, 2, 1), np.uint8)
    dataset = sources.ImageSet(images, np.array(train_labels), images, np.array(test_labels),
                               image_shape=(2, 2, 1))
    for task, kind in (("supervised", "fsvae"), ("semisupervised", "ssvae")):
        with pytest.raises(errors.ConfigError, match=f"training images of every class.*{missing}"):
            tasks.get(task).check(kind, dataset)


def test_a_run_that_fails_before_training_ends_on_its_error(tmp_path):
    """Before: the sample grids' close() met a model that had never been fitted and raised an
    AttributeError over the run's own DataError (a traceback from bin/train)."""
    import conftest
    from tfp_vae import train
    with pytest.raises(errors.DataError, match="fewer than --labels_per_class=7000"):
        train.run(train.Settings(model="ssvae", labels_per_class=7000, iter_max=2,
                                 out_dir=str(tmp_path), **conftest.QUIET))


def test_a_loaded_savedmodels_grids_refuse_seeds_beyond_an_int32():
    """Before: bin/sample --seed=4294967296 drew the pictures of seed 0."""
    from tfp_vae import pretrained, saved
    model = saved.SavedVAE(pretrained.path("gmvae"))
    with pytest.raises(ValueError, match="a seed is a whole number"):
        model.sample_grid(2 ** 32, n=4)
    with pytest.raises(ValueError, match="a seed is a whole number"):
        model.component_grid([0], 2, 2 ** 32)


# Labels, as a script passes them (one rule for every entry point: tfp_vae.labels).
LABELS = np.array([3, 1, 4, 1, 5, 9])


@pytest.mark.parametrize("kind", [models.FSVAE, models.SSVAE])
def test_labels_as_a_column_or_one_hot_rows_give_the_bound_of_integer_labels(kind):
    """(B, 1) labels once broadcast to a (B, B) bound; one-hot rows stored as integers failed
    inside the encoder."""
    model = tiny(kind)
    seed = tf.constant([1, 2])
    want = model.negative_elbo(X, LABELS, seed=seed).value
    for given in (LABELS[:, None], np.eye(10, dtype=np.int64)[LABELS],
                  np.eye(10, dtype=np.float32)[LABELS], tf.constant(LABELS, tf.int64)):
        got = model.negative_elbo(X, given, seed=seed).value
        assert got.shape == (6,)
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_the_ssvae_evaluates_one_hot_labels_as_integers_and_refuses_others():
    model = tiny(models.SSVAE)
    model.compile(optimizer="adam")
    want = model.evaluate(X, LABELS, batch_size=3, verbose=0, return_dict=True)
    got = model.evaluate(X, np.eye(10, dtype=np.float32)[LABELS], batch_size=3, verbose=0,
                         return_dict=True)
    assert got["acc"] == want["acc"] and got["ce"] == pytest.approx(want["ce"], rel=1e-6)
    with pytest.raises(ValueError, match=r"labels must lie in 0..9, got min 1 and max 12"):
        model.evaluate(X, np.where(LABELS == 3, 12, LABELS), batch_size=3, verbose=0)
    with pytest.raises(ValueError, match="one-hot labels must be rows of 10"):
        model.evaluate(X, np.eye(4, dtype=np.float32)[LABELS % 4], batch_size=3, verbose=0)


def test_the_fsvae_trains_on_one_hot_labels_as_on_integers():
    runs = []
    for labels in (LABELS, np.eye(10, dtype=np.float32)[LABELS]):
        keras.utils.set_random_seed(0)
        model = tiny(models.FSVAE)
        model.compile(optimizer="adam")
        model.fit(X, labels, batch_size=3, verbose=0)
        runs.append([w.numpy() for w in model.weights])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_sampling_takes_int64_labels():
    model = tiny(models.FSVAE)
    want = model.sample(3, y=[1, 2, 3], seed=tf.constant([4, 5]))["x"]
    got = model.sample(3, y=tf.constant([1, 2, 3], tf.int64), seed=tf.constant([4, 5]))["x"]
    np.testing.assert_array_equal(got, want)
    assert model.sample_labels(np.array([1, 2], np.int64), seed=tf.constant([4, 5]))["x"].shape \
        == (2, 16)


@pytest.mark.parametrize("components", [3, np.int64(3), [3]])
def test_one_gmvae_component_is_sampled_as_a_list_of_one(components):
    model = tiny(models.GMVAE, k=5)
    assert model.sample_components(components, 2, seed=tf.constant([1, 2]))["x"].shape == (2, 16)


@pytest.mark.parametrize("components", [tf.constant([7]), [1.5], -1])
def test_gmvae_components_outside_the_prior_are_refused(components):
    with pytest.raises(ValueError, match="components must"):
        tiny(models.GMVAE, k=5).sample_components(components, 2, seed=tf.constant([1, 2]))


@pytest.mark.parametrize("binary", [X > 0.5, (X > 0.5).astype(np.int64)])
def test_binary_images_stream_as_the_same_floats(binary):
    """Bool and 0/1 integer images trained before the pixel checks; they still do."""
    want = next(iter(data.train_dataset((X > 0.5).astype(np.float32), 3, seed=0)))
    np.testing.assert_array_equal(next(iter(data.train_dataset(binary, 3, seed=0))), want)


def test_other_integer_images_are_refused_with_the_fix():
    with pytest.raises(errors.DataError, match=r"images.astype\(np.uint8\)"):
        data.train_dataset((X * 255).astype(np.int32), 3, seed=0)


def test_a_memory_mapped_array_is_checked_without_reading_it_whole(tmp_path, monkeypatch):
    path = tmp_path / "x.npy"
    bad = X.copy()
    bad[5, 0] = 2.0
    np.save(path, bad)
    monkeypatch.setattr(data, "_CHECK_ROWS", 2)
    seen = []
    check = data.check_pixels
    monkeypatch.setattr(data, "check_pixels", lambda x, where: seen.append(len(x)) or
                        check(x, where))
    with pytest.raises(errors.DataError, match=r"float images must lie in \[0, 1\]"):
        data.train_dataset(np.load(path, mmap_mode="r"), 3, seed=0)
    assert seen == [2, 2, 2]


def test_a_column_of_labels_after_a_batch_of_them_trains_and_evaluates():
    """Keras retraces the step with the labels' shape relaxed to an unknown rank: the column
    failed in the encoder there."""
    for kind in (models.FSVAE, models.SSVAE):
        model = tiny(kind)
        model.compile(optimizer="adam")
        run = model.evaluate if kind is models.SSVAE else model.fit
        run(X, LABELS, batch_size=3, verbose=0)
        run(X, LABELS[:, None], batch_size=3, verbose=0)


@pytest.mark.parametrize("rows", [np.zeros((6, 10)), np.full((6, 10), 0.1),
                                  np.eye(10)[LABELS] + np.eye(10)[0]])
def test_rows_that_are_not_one_hot_are_refused(rows):
    """Before: the model's networks took them as they were while a SavedModel and fit took
    their argmax, so the two disagreed silently."""
    with pytest.raises(ValueError, match="must hold one 1 and 9 zeros"):
        tiny(models.FSVAE).negative_elbo(X, rows)


def test_labels_of_another_count_than_the_images_are_refused():
    """Before: an error from inside the encoder's broadcasting."""
    model = tiny(models.FSVAE)
    with pytest.raises(ValueError, match="3 labels for 6 images: give one label per image"):
        model.negative_elbo(X, LABELS[:3])
    with pytest.raises(ValueError, match="5 labels for 6 images"):
        model.embed(X, LABELS[:5])
