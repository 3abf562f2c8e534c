"""The reference evaluation protocol (docs/reference.md section 7), on stand-in bounds that record
how they are called."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from tfp_vae import evaluate, models


def test_reference_protocol_calls_each_bound_as_the_reference_does():
    """100 calls of the NELBO and max(100 // m, 1) calls of -IWAE-m (100, 10, 1, 1) for m in
    (1, 10, 100, 1000), each call with its own seed, on the whole subset at once; each number is
    the mean over its calls of the per-image mean."""
    x = tf.zeros([100, 4])
    elbo_seeds, iwae_calls = [], collections.defaultdict(list)

    def negative_elbo(images, seed):
        assert images.shape == (100, 4)
        elbo_seeds.append(tuple(seed.numpy()))
        r = float(len(elbo_seeds))
        return tf.fill([100], 3 * r), tf.fill([100], r), tf.fill([100], 2 * r)

    def negative_iwae(images, m, seed):
        assert images.shape == (100, 4)
        calls = iwae_calls[int(m)]
        calls.append(tuple(seed.numpy()))
        value = tf.fill([100], float(len(calls)) + int(m))
        return value, value, value

    result = evaluate.reference_protocol(negative_elbo, negative_iwae, x, seed=0)

    assert len(elbo_seeds) == 100 and len(set(elbo_seeds)) == 100
    assert {m: len(calls) for m, calls in iwae_calls.items()} == {1: 100, 10: 10, 100: 1, 1000: 1}
    every_seed = elbo_seeds + [s for calls in iwae_calls.values() for s in calls]
    assert len(set(every_seed)) == len(every_seed)  # no draws shared between bounds or repeats
    assert result["nelbo"]["n"] == 100 and result["nelbo"]["mean"] == 3 * 50.5
    assert result["kl"]["mean"] == 50.5 and result["rec"]["mean"] == 2 * 50.5
    np.testing.assert_allclose(result["nelbo"]["se"], np.arange(3, 301, 3).std(ddof=1) / 10)
    assert [result["niwae"][m]["n"] for m in (1, 10, 100, 1000)] == [100, 10, 1, 1]
    assert [result["niwae"][m]["mean"] for m in (1, 10, 100, 1000)] == [51.5, 15.5, 101, 1001]
    assert result["niwae"][1000]["se"] is None


@pytest.mark.parametrize("kind", ["vae", "fsvae"])
def test_the_bounds_of_a_model_and_of_its_export_agree(kind, tmp_path):
    """One interface: evaluate.bounds of a Keras model and of its SavedModel behind
    saved.SavedVAE give the same numbers (the FSVAE's with labels)."""
    from tfp_vae import export, saved
    model = models.get(kind)(z_dim=2, image_shape=(4, 4, 1))
    export.export(model, tmp_path / "m")
    x = tf.constant(np.random.default_rng(0).random((5, 16)).astype(np.float32))
    y = tf.constant([0, 1, 2, 3, 4], tf.int32)
    with_labels = kind == "fsvae"
    labels = [y] if with_labels else []
    for source in (model, saved.SavedVAE(str(tmp_path / "m"))):
        elbo, iwae = evaluate.bounds(source, with_labels)
        out = (elbo(x, *labels, tf.constant([1, 2]))[0].numpy(),
               iwae(x, *labels, tf.constant(7), tf.constant([1, 2]))[0].numpy())
        if source is model:
            expected = out
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_a_loaded_export_takes_labels_as_the_model_does(tmp_path):
    """Before: int64 labels failed in TensorFlow's conversion and one-hot rows in the
    signature's binding, where the Keras model took both."""
    from tfp_vae import export, saved
    model = models.get("fsvae")(z_dim=2, image_shape=(4, 4, 1))
    export.export(model, tmp_path / "m")
    loaded = saved.SavedVAE(str(tmp_path / "m"))
    x = np.random.default_rng(0).random((5, 16)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 9])
    want = loaded.negative_elbo(x, y, seed=[1, 2])[0].numpy()
    for given in (tf.constant(y, tf.int64), y[:, None], np.eye(10, dtype=np.float32)[y]):
        np.testing.assert_array_equal(loaded.negative_elbo(x, given, seed=[1, 2])[0], want)
        np.testing.assert_allclose(loaded.embed(x, given), model.embed(x, y), atol=1e-6)
    assert loaded.sample_labels(tf.constant([1, 2], tf.int64), seed=[3, 4])["x"].shape == (2, 16)
    with pytest.raises(ValueError, match=r"labels must lie in 0..9, got min 1 and max 10"):
        loaded.negative_elbo(x, y + 1, seed=[1, 2])
