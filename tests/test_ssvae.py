"""The SSVAE (M2): the enumerated bound, the gw = 0 objective, replicas, export and bin/train."""

import json
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import conftest

from tfp_vae import bounds, data, export, images, models
from conftest import run_tool

tfd = tfp.distributions


def _separable(n, seed=0, noise=0.05, dim=784):
    """Binary images of 10 well-separated prototype classes, with labels."""
    rng = np.random.RandomState(seed)
    prototypes = np.random.RandomState(99).binomial(1, 0.3, (10, dim))
    y = rng.randint(0, 10, n)
    x = np.abs(prototypes[y] - rng.binomial(1, noise, (n, dim))).astype(np.float32)
    return x, y.astype(np.int32)


def test_enumerated_bound_equals_a_slow_per_label_computation():
    model = models.SSVAE(z_dim=4, seed=0)
    x, _ = _separable(6)
    seed = tf.constant([5, 7])
    fast = model.negative_elbo(x, seed=seed)
    # Slow: one label at a time, with the same standard-normal noise eps[k] for label k.
    eps = tf.random.stateless_normal([10, 6, 4], seed=seed)
    probs = tf.nn.softmax(model.classifier.net(x)).numpy()
    rec, kl_z = np.zeros(6), np.zeros(6)
    for k in range(10):
        y = np.zeros((6, 10), np.float32)
        y[:, k] = 1
        h = model.encoder.net(np.concatenate([x, y], 1)).numpy()
        mean, var = h[:, :4], np.log1p(np.exp(h[:, 4:])) + 1e-8
        z = mean + np.sqrt(var) * eps[k].numpy()
        logits = model.decoder.net(np.concatenate([z, y], 1).astype(np.float32)).numpy()
        log_px = (x * logits - np.logaddexp(0, logits)).sum(1)
        rec += probs[:, k] * -log_px
        kl_z += probs[:, k] * 0.5 * (-np.log(var) + var + mean ** 2 - 1).sum(1)
    kl_y = (probs * (np.log(probs) + np.log(10))).sum(1)
    np.testing.assert_allclose(fast.rec, rec, rtol=1e-4)
    np.testing.assert_allclose(fast.kl_z, kl_z, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast.kl_y, kl_y, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fast.value, rec + kl_z + kl_y, rtol=1e-4)


def _replicated(bound, x, copies):
    """Mean and standard error over ``copies`` independent estimates per example of ``x``, from
    one batched call of ``bound`` on x tiled ``copies`` times (each row draws its own noise)."""
    values = bound(np.tile(x, (copies, 1))).value.numpy().reshape(copies, len(x))
    return values.mean(0), values.std(0, ddof=1) / np.sqrt(copies)


def test_iwae_1_is_unbiased_for_the_enumerated_bound_and_iwae_m_tightens_with_m():
    """-IWAE-1 samples y ~ q(y|x), z ~ q(z|x,y) and weighs by p(y) p(z) p(x|z,y) / q(y|x) q(z|x,y):
    its mean over many draws is the enumerated -ELBO (KL over y included), within 4 standard
    errors; the mean of -IWAE-m falls from m = 1 to 10 to 100 (never rises beyond 2 se)."""
    dim = 64
    model = models.SSVAE(z_dim=3, x_dim=dim, seed=0, gw=1.0, cw=1.0)
    # A few steps make q(y|x) confident on some images (KL over y about 1 nat), uniform-ish on
    # others, and make the decoder use the label.
    train_x, _ = _separable(64, seed=1, dim=dim)
    xl, yl = _separable(20, seed=2, dim=dim)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(tf.data.Dataset.from_tensors({"x": train_x, "x_labelled": xl, "y_labelled": yl})
              .repeat(), epochs=1, steps_per_epoch=20, verbose=0)
    x, _ = _separable(4, seed=5, dim=dim)
    iwae = {m: _replicated(lambda xs, m=m: model.negative_iwae(xs, m, seed=tf.constant([3, m])),
                           x, copies)
            for m, copies in ((1, 16000), (10, 1000), (100, 200))}
    elbo, elbo_se = _replicated(lambda xs: model.negative_elbo(xs, seed=tf.constant([4, 0])), x,
                                4000)
    kl_y = model.negative_elbo(x, seed=tf.constant([4, 0])).kl_y.numpy()
    se = np.hypot(iwae[1][1], elbo_se)
    # The comparison can tell: 4 se is far below the KL over y that a wrong weighting would drop.
    assert np.all(4 * se < 0.25) and kl_y.max() > 0.5, (se, kl_y)
    np.testing.assert_array_less(np.abs(iwae[1][0] - elbo), 4 * se)
    for small, large in ((1, 10), (10, 100)):
        margin = 2 * np.hypot(iwae[small][1], iwae[large][1])
        np.testing.assert_array_less(iwae[large][0], iwae[small][0] + margin)
    margin = 4 * np.hypot(iwae[1][1], iwae[100][1])
    np.testing.assert_array_less(iwae[100][0], iwae[1][0] - margin)  # strictly tighter


def _batch(n_unlabelled=7, n_labelled=5):
    x, y = _separable(n_unlabelled, seed=1)
    xl, yl = _separable(n_labelled, seed=2)
    return {"x": x, "y": y, "x_labelled": xl, "y_labelled": yl}


def test_gw_zero_gives_exactly_the_classifier_gradient():
    model = models.SSVAE(z_dim=4, gw=0.0, cw=100.0)
    batch = _batch()
    with tf.GradientTape(persistent=True) as tape:
        loss, terms = model.loss_and_terms(batch, tf.constant([0, 0]))
        manual = 100.0 * tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            batch["y_labelled"], model.classifier.net(batch["x_labelled"])))
    assert set(terms) == {"ce", "acc"}
    for variable in model.encoder.trainable_variables + model.decoder.trainable_variables:
        assert tape.gradient(loss, variable) is None
    for variable in model.classifier.trainable_variables:
        np.testing.assert_allclose(tape.gradient(loss, variable), tape.gradient(manual, variable),
                                   rtol=1e-5, atol=1e-7)


def test_loss_and_its_gradient_with_gw_match_a_hand_computation():
    """With gw = 0.5 and cw = 3, ``loss_and_terms`` is gw * mean_u[-ELBO] + cw * mean_l[-log
    q(yl|xl)], the M2 bound written out from the networks' raw outputs: sum_y q(y|x) [-log
    p(x|z_y,y) + KL(q(z|x,y) || N(0, I))] + KL(q(y|x) || uniform), z_y drawn with the loss's seed;
    loss and gradients of every trainable variable agree."""
    gw, cw, z_dim = 0.5, 3.0, 3
    model = models.SSVAE(z_dim=z_dim, gw=gw, cw=cw, seed=0)
    batch = _batch()
    xu, xl, yl = batch["x"], batch["x_labelled"], batch["y_labelled"]
    seed = tf.constant([3, 9])
    # The draws of q(z|x,y) for label k, all labels at once: (labels, batch, z_dim).
    eps = tf.random.stateless_normal([10, len(xu), z_dim], seed=seed)
    with tf.GradientTape(persistent=True) as tape:
        loss, terms = model.loss_and_terms(batch, seed)
        log_q_y = tf.nn.log_softmax(model.classifier.net(xu))             # (B, 10)
        q_y = tf.exp(log_q_y)
        nelbo = tf.reduce_sum(q_y * (log_q_y + np.log(10.0)), 1)           # KL(q(y|x) || p(y))
        for k in range(10):
            y = tf.one_hot(tf.fill([len(xu)], k), 10)
            h = model.encoder.net(tf.concat([xu, y], 1))
            mean, var = h[:, :z_dim], tf.nn.softplus(h[:, z_dim:]) + 1e-8
            z = mean + tf.sqrt(var) * eps[k]
            logits = model.decoder.net(tf.concat([z, y], 1))
            rec = -tf.reduce_sum(xu * logits - tf.nn.softplus(logits), 1)
            kl_z = 0.5 * tf.reduce_sum(-tf.math.log(var) + var + mean ** 2 - 1, 1)
            nelbo += q_y[:, k] * (rec + kl_z)
        log_q_yl = tf.nn.log_softmax(model.classifier.net(xl))
        ce = -tf.gather(log_q_yl, yl, batch_dims=1)
        manual = gw * tf.reduce_mean(nelbo) + cw * tf.reduce_mean(ce)
    np.testing.assert_allclose(terms["nelbo"], nelbo, rtol=1e-5)
    np.testing.assert_allclose(loss, manual, rtol=1e-5)
    assert len(model.trainable_variables) == 18  # encoder, decoder and classifier: 3 layers each
    for variable in model.trainable_variables:
        np.testing.assert_allclose(tape.gradient(loss, variable), tape.gradient(manual, variable),
                                   rtol=1e-4, atol=1e-6, err_msg=variable.path)


class NoiseFreeSSVAE(models.SSVAE):
    """z = E[q(z|x,y)]: a training step is a deterministic function of its batch."""

    def negative_elbo(self, x, seed, q_y=None):
        q_y = self.classify(x) if q_y is None else q_y
        probs = q_y.probs_parameter()
        y = tf.broadcast_to(tf.eye(10)[:, None, :], [10, tf.shape(x)[0], 10])
        q_z = self.encode(x, y)
        w = tf.transpose(probs)
        rec = tf.reduce_sum(w * -self.decode(q_z.mean(), y).log_prob(x), 0)
        kl_z = tf.reduce_sum(w * tfd.kl_divergence(q_z, self.prior()), 0)
        kl_y = tfd.kl_divergence(q_y, self.label_prior())
        return bounds.SemiSupervisedBound(kl_z + kl_y + rec, kl_z, kl_y, rec)


def _step(strategy, batch, weights):
    with strategy.scope():
        model = NoiseFreeSSVAE(z_dim=3, gw=1.0, cw=100.0)
        model.set_weights(weights)
        model.compile(optimizer=keras.optimizers.SGD(1e-3))
    history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
    return model.get_weights(), {k: v[0] for k, v in history.history.items()}


def test_labelled_and_unlabelled_parts_scale_correctly_on_two_replicas():
    batch = _batch(8, 6)  # 4 + 4 unlabelled and 3 + 3 labelled per replica
    weights = NoiseFreeSSVAE(z_dim=3).get_weights()
    one_w, one_logs = _step(tf.distribute.OneDeviceStrategy("/cpu:0"), batch, weights)
    two_w, two_logs = _step(conftest.two_cpu_strategy(), batch, weights)
    for a, b, w0 in zip(one_w, two_w, weights):
        assert not np.allclose(a, w0)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for k in one_logs:
        np.testing.assert_allclose(one_logs[k], two_logs[k], rtol=1e-5, atol=1e-6)


def test_accuracy_on_a_separable_problem_rises_well_above_chance():
    x, y = _separable(2000, seed=3)
    xl, yl = _separable(100, seed=4)
    model = models.SSVAE(z_dim=8, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    stream = data.semisupervised_dataset((x * 255).astype(np.uint8), y, xl, yl, 64, seed=0)
    model.fit(stream, epochs=1, steps_per_epoch=40, verbose=0)
    test_x, test_y = _separable(500, seed=5)
    accuracy = np.mean(np.argmax(model(test_x), -1) == test_y)
    assert accuracy > 0.6


def test_semisupervised_stream_uses_all_labels_every_step():
    images = np.random.RandomState(0).randint(0, 256, (50, 784)).astype(np.uint8)
    labels = np.arange(50) % 10
    xl, yl = data.to_unit_interval(images[:20]), labels[:20]
    first, second = list(data.semisupervised_dataset(images, labels, xl, yl, 16, 0).take(2))
    assert first["x"].shape == (16, 784) and first["x_labelled"].shape == (20, 784)
    np.testing.assert_array_equal(first["y_labelled"], yl)
    assert set(np.unique(first["x_labelled"])) <= {0.0, 1.0}
    assert not np.array_equal(first["x_labelled"], second["x_labelled"])  # re-binarised


_LOAD = r"""
import json, sys
import numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
x = np.load(sys.argv[2])
p = loaded.classify(x=x)["probs"].numpy()
s = loaded.sample(n=tf.constant(3), y=tf.constant([2, 7]), seed=tf.constant([1, 1]))
print("RESULT" + json.dumps({"probs": p.tolist(), "x": s["x"].numpy().tolist()}))
"""


def test_export_and_reload_classifies_and_samples(tmp_path):
    model = models.SSVAE(z_dim=4, seed=1)
    export.export(model, tmp_path / "m")
    x, _ = _separable(4)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", _LOAD, str(tmp_path / "m"),
                           str(tmp_path / "x.npy")],
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    np.testing.assert_allclose(out["probs"], model(x), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(out["x"],
                                  model.sample_labels(np.repeat([2, 7], 3), seed=[1, 1])["x"])
    assert "classify" in export.read_metadata(tmp_path / "m")["signatures"]


def test_bin_train_ssvae_reports_accuracy_and_confusion(tmp_path):
    proc = run_tool("train", "--model=ssvae", "--gw=0", "--iter_max=20", "--iter_save=10",
                    "--log_every=10", "--nofull_test", "--noexport", f"--out_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "model=ssvae_gw=0_cw=100_run=0000"
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert result["steps"] == 20 and 0.3 < result["classifier"]["accuracy"] <= 1
    assert np.sum(result["classifier"]["confusion"]) == 10000
    assert "true \\ predicted" in proc.stdout
    assert tuple(tf.io.decode_png((run_dir / "confusion.png").read_bytes()).shape) == (240, 240, 1)
    assert tuple(tf.io.decode_png((run_dir / "samples.png").read_bytes()).shape) == (280, 560, 1)


def test_bin_evaluate_gives_the_models_own_test_accuracy(tmp_path, mnist):
    from tfp_vae import evaluate
    model = models.SSVAE(z_dim=4, seed=3)
    export.export(model, tmp_path / "m")
    out = tmp_path / "eval.json"
    proc = run_tool("evaluate", f"--model_dir={tmp_path / 'm'}", "--nofull_test", f"--out={out}",
                    f"--pictures_dir={tmp_path / 'pictures'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    pictures = {p.name: tf.io.decode_png(p.read_bytes()).numpy() for p in
                (tmp_path / "pictures").iterdir()}
    assert sorted(pictures) == ["confusion.png", "latent.png", "reconstructions.png",
                                "samples.png"]  # no history.csv: no curves; no subset: no iwae
    # The model's own grid (row = class, shared z) with its training seed, 3: bin/evaluate's
    # --seed defaults to it, as bin/train draws.
    drawn, rows, cols = model.sample_grid(3)
    own = images.tile(drawn.numpy(), rows, cols) * 255
    assert np.mean(pictures["samples.png"] != own) < 1e-3  # binary draws, same seed
    assert pictures["confusion.png"].shape == (240, 240, 1)
    fresh = json.loads(out.read_text())["classifier"]
    own = evaluate.classifier_accuracy(model, data.test_batches(mnist, binarized=False))
    assert fresh["n"] == 10000 and fresh["confusion"] == own["confusion"]
    assert "true \\ predicted" in proc.stdout


def test_evaluate_reports_cross_entropy_and_accuracy_only_with_labels():
    """model.evaluate((x, y)) reports the classifier's cross-entropy of those labels and its
    accuracy (not a placeholder 0.0); with images alone, neither."""
    x, y = _separable(60, seed=7)
    model = models.SSVAE(z_dim=3, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with_labels = model.evaluate(x, y, batch_size=20, verbose=0, return_dict=True)
    q = model.classify(tf.constant(x))
    want_ce = float(np.mean(-q.log_prob(y).numpy()))
    want_acc = float(np.mean(np.argmax(q.logits.numpy(), -1) == y))
    np.testing.assert_allclose(with_labels["ce"], want_ce, rtol=1e-5)
    np.testing.assert_allclose(with_labels["acc"], want_acc, rtol=1e-6)
    assert with_labels["ce"] > 0.5  # untrained: about log 10
    images_only = model.evaluate(x, batch_size=20, verbose=0, return_dict=True)
    assert "ce" not in images_only and "acc" not in images_only and "nelbo" in images_only


def test_shared_features_are_multiplied_once_with_the_same_result():
    """q(z | x, y) for x (B, D) against enumerated labels (K, B, K) takes x's product with the
    first layer once (``MLP.call_concatenated``); it equals the network on the explicit
    concatenation, values and gradients."""
    model = models.SSVAE(z_dim=4)
    x = tf.constant(np.random.RandomState(0).rand(5, 784).astype(np.float32))
    y = tf.broadcast_to(tf.eye(10)[:, None, :], [10, 5, 10])
    variables = model.encoder.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        shared = model.encoder(x, y).mean()
        explicit = model.encoder.net(tf.concat([tf.broadcast_to(x, [10, 5, 784]), y], -1))
        explicit = model.encoder.head(explicit).mean()
    assert shared.shape == explicit.shape == (10, 5, 4)
    np.testing.assert_allclose(shared, explicit, rtol=1e-5, atol=1e-6)
    for a, b in zip(tape.gradient(shared, variables), tape.gradient(explicit, variables)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
