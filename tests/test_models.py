"""The VAE as a Keras model: fit from a script, input checks, and data parallelism."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import conftest

from tfp_vae import bounds, models

tfd = tfp.distributions


def _mock_images(n=256, seed=0):
    """Binary 'images' with structure to learn: each is one of 4 noisy prototypes."""
    rng = np.random.RandomState(seed)
    prototypes = rng.binomial(1, 0.3, (4, 784))
    flips = rng.binomial(1, 0.05, (n, 784))
    return np.abs(prototypes[rng.randint(0, 4, n)] - flips).astype(np.float32)


def test_fit_lowers_the_loss_with_user_callbacks():
    x = _mock_images()
    model = models.VAE(z_dim=4, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    seen = []
    callback = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(logs))
    history = model.fit(tf.data.Dataset.from_tensor_slices(x).batch(32), epochs=4, verbose=0,
                        callbacks=[callback])
    nelbo = history.history["nelbo"]
    assert nelbo[-1] < nelbo[0] - 50
    assert [sorted(logs) for logs in seen] == [["kl", "loss", "nelbo", "rec"]] * 4
    np.testing.assert_allclose(history.history["loss"], nelbo, rtol=1e-5)  # the objective
    np.testing.assert_allclose(np.add(history.history["kl"], history.history["rec"]), nelbo,
                               rtol=1e-4)
    evaluation = model.evaluate(x, batch_size=64, verbose=0, return_dict=True)
    assert evaluation["nelbo"] < nelbo[0]


def test_fit_accepts_labelled_tuples_and_numpy():
    x = _mock_images(64)
    model = models.VAE(z_dim=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x, np.zeros(64), batch_size=16, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 4


def test_methods_return_distributions_and_tensors():
    model = models.VAE(z_dim=3)
    x = _mock_images(5)
    q = model.encode(x)
    assert isinstance(q, tfd.Distribution) and q.event_shape == [3] and q.batch_shape == [5]
    p = model.decode(q.sample(seed=[0, 1]))
    assert p.event_shape == [784]
    assert model.prior().event_shape == [3]
    s1, s2 = model.sample(7, seed=[4, 2]), model.sample(7, seed=[4, 2])
    np.testing.assert_array_equal(s1["x"], s2["x"])
    assert s1["x"].shape == (7, 784) and set(np.unique(s1["x"])) <= {0.0, 1.0}
    assert model(x).shape == (5, 784)
    assert model.negative_elbo(x, seed=3).value.shape == (5,)
    assert model.negative_iwae(x, 10, seed=3).value.shape == (5,)


def test_variance_head_is_softplus_plus_floor():
    model = models.VAE(z_dim=2)
    x = _mock_images(3)
    h = model.encoder.net(x)
    q = model.encode(x)
    np.testing.assert_allclose(q.variance(), tf.nn.softplus(h[:, 2:]) + 1e-8, rtol=1e-5)
    np.testing.assert_allclose(q.mean(), h[:, :2], rtol=1e-6)


@pytest.mark.parametrize("binary", [True, False])
def test_bernoulli_log_density_is_tfps_with_one_softplus(binary):
    """distributions.SoftplusBernoulli: x * l - softplus(l) per pixel, TFP's Bernoulli log-density
    (and its gradient) to float32 rounding, for binary pixels and for grey ones in [0, 1]
    (the continuous cross-entropy), against float64 NumPy as well."""
    from tfp_vae import distributions
    rs = np.random.RandomState(0)
    logits = tf.constant(rs.normal(0, 6, (3, 5, 784)).astype(np.float32))  # (samples, images, D)
    x = (rs.binomial(1, 0.3, (5, 784)) if binary else rs.uniform(0, 1, (5, 784))).astype(np.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        ours = distributions.BernoulliLogits()(logits).log_prob(x)
        tfps = tfp.distributions.Independent(
            tfp.distributions.Bernoulli(logits=logits, dtype=tf.float32), 1).log_prob(x)
    assert ours.shape == (3, 5)
    np.testing.assert_allclose(ours, tfps, rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(ours, logits), tape.gradient(tfps, logits), atol=1e-6)
    l64 = logits.numpy().astype(np.float64)
    want = np.sum(x * l64 - np.logaddexp(0, l64), -1)
    np.testing.assert_allclose(ours, want, rtol=1e-6)
    # The point of the class: one softplus in the graph (TFP's form has two).
    graph = tf.function(lambda lg: distributions.BernoulliLogits()(lg).log_prob(x)
                        ).get_concrete_function(logits).graph
    assert [op.type for op in graph.get_operations()].count("Softplus") == 1
    # Given probabilities instead of logits, it is TFP's own log-density.
    probs = tf.sigmoid(logits)
    np.testing.assert_allclose(
        distributions.SoftplusBernoulli(probs=probs).log_prob(x),
        tfp.distributions.Bernoulli(probs=probs).log_prob(x), rtol=1e-6)


def test_pytorch_style_initialisation():
    model = models.VAE(z_dim=10)
    first = model.encoder.net.dense[0]
    bound = 1 / np.sqrt(784)
    for w in (first.kernel.numpy(), first.bias.numpy()):
        assert np.abs(w).max() <= bound * (1 + 1e-6) and np.abs(w).max() > 0.9 * bound
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 661_404


@pytest.mark.parametrize("bad, error, message", [
    (np.zeros((4, 28, 29), np.float32), ValueError, r"shape \(batch, 28, 28, 1\) or flattened "
                                                    r"\(batch, 784\), got \(4, 28, 29\)"),
    (np.zeros((4, 784), np.int32), TypeError, "uint8 images .* or float ones in \\[0, 1\\], got "
                                              "dtype int32"),
    (np.full((4, 784), 2.0, np.float32), tf.errors.InvalidArgumentError, r"\[0, 1\]"),
    (np.full((4, 784), np.nan, np.float32), tf.errors.InvalidArgumentError, "NaN"),
])
def test_bad_images_give_clear_errors(bad, error, message):
    model = models.VAE(z_dim=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(error, match=message):
        model.fit(bad, epochs=1, batch_size=4, verbose=0)


@pytest.mark.parametrize("kind", ["vae", "ssvae"])
@pytest.mark.parametrize("bound", ["negative_elbo", "negative_iwae"])
def test_the_bounds_check_their_images_as_fit_does(kind, bound):
    """A bound refuses what fit refuses, and reads uint8 as fit does (divided by 255, binarised
    for a Bernoulli model: all-255 images are all-ones ones)."""
    model = models.get(kind)(z_dim=2, image_shape=(4, 4, 1), num_classes=3) if kind == "ssvae" \
        else models.VAE(z_dim=2, image_shape=(4, 4, 1))
    compute = getattr(model, bound)
    args = (3,) if bound == "negative_iwae" else ()
    for bad in (np.full((2, 16), 2.0, np.float32), np.full((2, 16), np.nan, np.float32)):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 1\]"):
            compute(bad, *args, seed=1)
    with pytest.raises(ValueError, match=r"shape \(batch, 4, 4, 1\)"):
        compute(np.zeros((2, 15), np.float32), *args, seed=1)
    for pixel in (0, 255):
        as_uint8 = compute(np.full((2, 4, 4, 1), pixel, np.uint8), *args, seed=1).value
        as_float = compute(np.full((2, 16), pixel / 255, np.float32), *args, seed=1).value
        np.testing.assert_allclose(as_uint8, as_float, rtol=1e-6)


@pytest.mark.parametrize("argument", [{"z_dim": 2.5}, {"z_dim": True}, {"seed": -1},
                                      {"image_shape": (4, 4.5, 1)}, {"train_samples": 0}])
def test_settings_that_are_not_whole_numbers_are_refused(argument):
    name = next(iter(argument))
    with pytest.raises(ValueError, match=f"{name} must be a whole number"):
        models.VAE(**{"image_shape": (4, 4, 1), **argument})
    assert models.VAE(z_dim=2.0, image_shape=(4, 4, 1)).z_dim == 2


@pytest.mark.parametrize("kind", [models.VAE, models.FSVAE])
@pytest.mark.parametrize("n", [2.5, -1, "3", True])
def test_sample_takes_a_whole_number_of_draws(kind, n):
    """Before: 2.5 drew 2 pictures, -1 raised TensorFlow's error about a dimension."""
    model = kind(z_dim=2, image_shape=(4, 4, 1))
    with pytest.raises(ValueError, match="n must be a whole number >= 0"):
        model.sample(n)
    assert model.sample(3.0)["x"].shape == (3, 16) and model.sample(0)["x"].shape == (0, 16)


class NoiseFreeVAE(models.VAE):
    """z = E[q(z|x)]: a training step becomes a deterministic function of its batch, so one step
    on 2 replicas must equal one step on 1 device exactly (up to summation order)."""

    def negative_elbo(self, x, seed):
        q = self.encode(x)
        rec = -self.decode(q.mean()).log_prob(x)
        kl = tfd.kl_divergence(q, self.prior())
        return bounds.Bound(kl + rec, kl, rec)


def _one_step(strategy, x, weights):
    with strategy.scope():
        model = NoiseFreeVAE(z_dim=3)
        model.set_weights(weights)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    logs = model.fit(tf.data.Dataset.from_tensor_slices(x).batch(len(x)), epochs=1, verbose=0)
    return model.get_weights(), {k: v[0] for k, v in logs.history.items()}


@pytest.mark.parametrize("batch", [8, 16])
def test_two_replicas_give_the_same_step_as_one_device(batch):
    x = _mock_images(batch, seed=3)
    weights = NoiseFreeVAE(z_dim=3).get_weights()
    one_w, one_logs = _one_step(tf.distribute.OneDeviceStrategy("/cpu:0"), x, weights)
    two = conftest.two_cpu_strategy()
    assert two.num_replicas_in_sync == 2
    two_w, two_logs = _one_step(two, x, weights)
    for a, b, w0 in zip(one_w, two_w, weights):
        assert not np.allclose(a, w0)  # the step did change the weights
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for k in one_logs:
        np.testing.assert_allclose(one_logs[k], two_logs[k], rtol=1e-5)


@pytest.mark.parametrize("kind", ["vae", "gmvae"])
def test_uneven_split_weights_every_example_equally(kind):
    """97 images over two replicas (49 + 48), the real sampled bound: one fit step equals one
    step of plain SGD on the mean over all 97 examples of -ELBO, each replica's examples with
    that replica's draws (the seed (seed, 0) folded with its replica id). With each replica's
    mean halved instead (the old weighting) the update is about 2 % off."""
    x = _mock_images(97, seed=3)
    cls = models.get(kind)
    strategy = conftest.two_cpu_strategy()
    with strategy.scope():
        model = cls(z_dim=3, seed=5, **({"k": 4} if kind == "gmvae" else {}))
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    before = [v.numpy() for v in model.trainable_variables]
    model.fit(tf.data.Dataset.from_tensors(x), epochs=1, verbose=0)
    after = [v.numpy() for v in model.trainable_variables]

    single = cls(z_dim=3, seed=5, **({"k": 4} if kind == "gmvae" else {}))
    single(x[:1])
    for v, w in zip(single.trainable_variables, before):
        v.assign(w)
    seed = tf.constant([5, 0], tf.int32)
    with tf.GradientTape() as tape:
        values = [single.negative_elbo(
                      part, seed=tf.random.experimental.stateless_fold_in(seed, r)).value
                  for r, part in enumerate((x[:49], x[49:]))]
        loss = tf.reduce_mean(tf.concat(values, 0))
    grads = tape.gradient(loss, single.trainable_variables)
    for w0, w1, g in zip(before, after, grads):
        np.testing.assert_allclose(w1 - w0, -0.1 * g.numpy(), rtol=2e-3, atol=1e-7)


def test_replicas_draw_different_noise():
    strategy = conftest.two_cpu_strategy()
    with strategy.scope():
        model = models.VAE(z_dim=2, seed=3)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    seeds = strategy.run(model.step_seed)
    a, b = [t.numpy() for t in strategy.experimental_local_results(seeds)]
    assert not np.array_equal(a, b)


def test_evaluate_under_two_replicas():
    strategy = conftest.two_cpu_strategy()
    with strategy.scope():
        model = models.VAE(z_dim=2, seed=3)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    result = model.evaluate(_mock_images(30), batch_size=15, verbose=0, return_dict=True)
    single = models.VAE(z_dim=2, seed=3)
    single.set_weights(model.get_weights())
    single.compile(optimizer=keras.optimizers.Adam(1e-3))
    reference = single.evaluate(_mock_images(30), batch_size=15, verbose=0, return_dict=True)
    assert np.isfinite(result["nelbo"])
    np.testing.assert_allclose(result["kl"], reference["kl"], rtol=1e-4)  # analytic: no noise


def _compiled_vae(**kwargs):
    """A small compiled VAE, the same weights whatever ``kwargs``."""
    keras.utils.set_random_seed(0)
    model = models.VAE(z_dim=2, image_shape=(4, 4, 1), **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    return model


def test_kl_warmup_and_free_bits_weigh_the_training_kl_and_report_the_true_bound():
    """Bowman et al. (2016) / Sønderby et al. (2016): rec + (t / T) KL at step t < T; Kingma et
    al. (2016): rec + max(lambda, mean KL); the reported terms stay the true bound's."""
    x = tf.constant(np.random.default_rng(0).integers(0, 2, (6, 16)).astype(np.float32))
    seed = tf.constant([1, 2])
    plain = _compiled_vae()
    loss, terms = plain.loss_and_terms(x, seed)
    assert float(loss) == float(tf.reduce_mean(terms["nelbo"]))  # no option: the bound, exactly
    rec, kl = float(np.mean(terms["rec"])), float(np.mean(terms["kl"]))
    warm = _compiled_vae(kl_warmup=100)
    for step, weight in ((0, 0.0), (25, 0.25), (100, 1.0), (400, 1.0)):
        warm.optimizer.iterations.assign(step)
        loss, warm_terms = warm.loss_and_terms(x, seed)
        np.testing.assert_allclose(float(loss), rec + weight * kl, rtol=1e-6)
        np.testing.assert_allclose(warm_terms["nelbo"], terms["nelbo"], rtol=1e-6)
    for floor in (0.5 * kl, 2 * kl):
        loss, _ = _compiled_vae(free_bits=floor).loss_and_terms(x, seed)
        np.testing.assert_allclose(float(loss), rec + max(floor, kl), rtol=1e-6)
    # Below the floor the KL term gives the encoder's variance no gradient of its own.
    model = _compiled_vae(free_bits=2 * kl)
    with tf.GradientTape() as tape:
        loss, _ = model.loss_and_terms(x, seed)
    grads = tape.gradient(loss, model.trainable_variables)
    with tf.GradientTape() as tape:
        rec_only = tf.reduce_mean(model.loss_and_terms(x, seed)[1]["rec"])
    expected = tape.gradient(rec_only, model.trainable_variables)
    for g, e in zip(grads, expected):
        if e is not None:
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kl_warmup=-1), "kl_warmup must be a whole number >= 0"),
    (dict(free_bits=float("nan")), "free_bits must be a finite number >= 0"),
    (dict(objective="iwae", kl_warmup=10), "objective='iwae' has none"),
])
def test_kl_options_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.VAE(z_dim=2, image_shape=(4, 4, 1), **kwargs)


def test_the_ssvae_takes_kl_warmup_and_free_bits_on_both_kl_terms():
    x = tf.constant(np.random.default_rng(0).integers(0, 2, (6, 16)).astype(np.float32))
    keras.utils.set_random_seed(0)
    plain = models.SSVAE(z_dim=2, image_shape=(4, 4, 1), num_classes=3)
    keras.utils.set_random_seed(0)
    model = models.SSVAE(z_dim=2, image_shape=(4, 4, 1), num_classes=3, kl_warmup=10,
                         free_bits=1e6)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(5)
    _, terms = plain.loss_and_terms(x, tf.constant([1, 2]))
    loss, _ = model.loss_and_terms(x, tf.constant([1, 2]))  # rec + 0.5 * max(1e6, KL)
    np.testing.assert_allclose(float(loss), np.mean(terms["rec"]) + 0.5 * 1e6, rtol=1e-6)
