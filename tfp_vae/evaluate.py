"""The evaluation protocol of CS236 HW2 (docs/reference.md, section 7), and the full test set.

Works on the two bounds as per-example functions (:func:`bounds`) of a Keras model or a loaded
SavedModel; :mod:`tfp_vae.tasks` chooses what each kind of model is evaluated on.

Reference protocol on the fixed, statically binarised 100-image subset: the NELBO, KL and Rec
are averages of 100 calls (each a mean over the 100 images, one z each); the negative IWAE-m for
m = 1, 10, 100, 1000 averages max(100 // m, 1) calls. We also give the standard error over the
repeats, and on the full test set the mean NELBO and negative IWAE-100 with the standard error
over images. On data other than MNIST the same protocol runs on the subset of
:func:`tfp_vae.data.test_subset` (about 100 images: the first of each class), binarised for
Bernoulli models and continuous for Gaussian ones.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from tfp_vae import data, networks
from tfp_vae.settings import IWAE_SAMPLES


def bounds(model, with_labels=False):
    """The two bound functions the protocol calls, of anything with the model's interface (a
    Keras model, or a loaded SavedModel through :class:`tfp_vae.saved.SavedVAE`):

    * ``elbo(x, [y,] seed) -> (value, kl, rec)``, each of shape (B,);
    * ``iwae(x, [y,] m, seed) -> (value, kl, rec)``;

    with the labels ``y`` for a model of -log p(x | y) (``with_labels``). They are compiled with
    ``tf.function`` (without XLA: it measured no faster, and the SavedModel's signatures, which
    ``bin/evaluate`` runs, would then disagree in the last digits; without AutoGraph: the bounds
    have no Python control flow on tensors)."""
    specs = [tf.TensorSpec([None, model.x_dim], tf.float32)]
    if with_labels:
        specs.append(tf.TensorSpec([None], tf.int32))
    seed_spec = tf.TensorSpec([2], tf.int32)

    def elbo(x, *rest):
        y, seed = (rest[0], rest[1]) if with_labels else (None, rest[0])
        return tuple(model.negative_elbo(x, y, seed=seed))

    def iwae(x, *rest):
        y, m, seed = rest if with_labels else (None, *rest)
        return tuple(model.negative_iwae(x, m, y, seed=seed))

    return (tf.function(elbo, input_signature=[*specs, seed_spec], autograph=False),
            tf.function(iwae, input_signature=[*specs, tf.TensorSpec([], tf.int32), seed_spec],
                        autograph=False))


def _summary(values):
    values = np.asarray(values, np.float64)
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
    return {"mean": float(values.mean()), "se": se, "n": int(len(values))}


def reference_protocol(negative_elbo, negative_iwae, x, seed=0, repeats=100,
                       iwae_samples=IWAE_SAMPLES):
    """The reference evaluation on the 100-image subset ``x``.

    Returns:
      ``{"nelbo": s, "kl": s, "rec": s, "niwae": {m: s}}`` where each ``s`` is
      ``{"mean", "se", "n"}``: the mean over the repeats, its standard error, and the repeat count.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    parts = np.array([[np.mean(v) for v in negative_elbo(x, tf.constant([seed, r], tf.int32))]
                      for r in range(repeats)])
    result = {name: _summary(parts[:, i]) for i, name in enumerate(("nelbo", "kl", "rec"))}
    result["niwae"] = {}
    for m in iwae_samples:
        runs = [np.mean(negative_iwae(x, tf.constant(m), tf.constant([seed + 1 + m, r]))[0])
                for r in range(max(repeats // m, 1))]
        result["niwae"][m] = _summary(runs)
    return result


def full_test_set(negative_elbo, negative_iwae, batches, with_labels=False, seed=0,
                  iwae_samples=100):
    """Mean NELBO (one z per image) and negative IWAE-``iwae_samples`` over all images of
    ``batches`` (``(x, labels)`` pairs as :func:`tfp_vae.data.test_batches` yields them; the
    labels are passed to conditional bounds, ``with_labels``), with the standard error over
    images. The seeds of a batch derive from ``seed`` and the index of its first image."""
    nelbo, niwae, start = [], [], 0
    for x, labels in batches:
        batch = [tf.convert_to_tensor(x, tf.float32)]
        if with_labels:
            batch.append(tf.convert_to_tensor(labels, tf.int32))
        nelbo.append(negative_elbo(*batch, tf.constant([seed, start], tf.int32))[0].numpy())
        niwae.append(negative_iwae(*batch, tf.constant(iwae_samples),
                                   tf.constant([seed + 1, start], tf.int32))[0].numpy())
        start += len(x)
    return {"nelbo": _summary(np.concatenate(nelbo)),
            f"niwae_{iwae_samples}": _summary(np.concatenate(niwae))}


def test_log_likelihood(negative_iwae, batches, samples, with_labels=False, seed=0):
    """The papers' test log-likelihood metric (Burda, Grosse & Salakhutdinov, 2016; Tomczak &
    Welling, 2018): -IWAE-``samples`` (5,000 in the papers) of every image of ``batches`` (the
    test split binarised once, seed 0, as :func:`tfp_vae.data.test_batches` yields it), an upper
    bound on -log p(x) that the papers report as the NLL. Memory stays bounded: the bound is drawn
    in chunks (the model's ``iwae_max_rows``).

    Returns:
      ``{"samples", "mean", "se", "n"}``: the mean over images and its standard error.
    """
    values, start = [], 0
    for x, labels in batches:
        batch = [tf.convert_to_tensor(x, tf.float32)]
        if with_labels:
            batch.append(tf.convert_to_tensor(labels, tf.int32))
        values.append(negative_iwae(*batch, tf.constant(samples),
                                    tf.constant([seed + 2, start], tf.int32))[0].numpy())
        start += len(x)
    return {"samples": int(samples), **_summary(np.concatenate(values))}


def train_check_classifier(dataset, steps=3000, batch_size=100, seed=0):
    """A small classifier (the reference's v1 classifier: D -> 300 -> 300 -> 10, ReLU) trained
    with Adam on the continuous training images of an :class:`~tfp_vae.data.ImageSet`, to check
    that conditional samples show their class.

    Returns:
      ``(probs, test_accuracy)``: a function images (B, D) -> class probabilities, and its
      accuracy on the continuous test images (how far its verdicts can be trusted).
    """
    keras.utils.set_random_seed(seed)
    dim = int(np.prod(dataset.image_shape))
    inputs = keras.Input((dim,))
    net = keras.Model(inputs, networks.MLP(dim, networks.HIDDEN["v1"], dataset.num_classes,
                                           "relu")(inputs))
    net.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    stream = data.train_dataset(dataset.train_images, batch_size, seed + 7, binarized=False,
                                labels=dataset.train_labels)
    net.fit(stream, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    probs = tf.function(lambda x: tf.nn.softmax(net(x)),
                        input_signature=[tf.TensorSpec([None, dim], tf.float32)], autograph=False)
    test = classifier_accuracy(probs, data.test_batches(dataset, binarized=False),
                               dataset.num_classes)
    return probs, test["accuracy"]


def conditional_sample_accuracy(model, checker, per_class=100, seed=0):
    """How often ``checker`` (from :func:`train_check_classifier`) labels the model's
    class-conditional samples as the class they were drawn for: ``per_class`` samples of each
    class, each from its own z ~ p(z), pictured as the model's grid pictures them.

    Returns:
      ``{"accuracy", "n", "confusion", "checker_test_accuracy"}``.
    """
    probs, checker_accuracy = checker
    labels = np.repeat(np.arange(model.num_classes, dtype=np.int32), per_class)
    pictures = model.sample_labels(labels, seed=tf.constant([seed, 17], tf.int32))
    result = classifier_accuracy(probs, [(pictures[model.picture_keys[0]].numpy(), labels)],
                                 model.num_classes)
    result["checker_test_accuracy"] = checker_accuracy
    return result


def classifier_accuracy(predict_probs, batches, num_classes=10):
    """Accuracy of argmax ``predict_probs(x)`` over ``(x, labels)`` batches, and the confusion
    matrix (rows: true class, columns: predicted class)."""
    predicted, truth = [], []
    for x, y in batches:
        probs = predict_probs(tf.convert_to_tensor(x, tf.float32))
        if hasattr(probs, "probs_parameter"):  # a Keras model's q(y | x)
            probs = probs.probs_parameter()
        predicted.append(np.argmax(probs, -1))
        truth.append(np.asarray(y, np.int64))
    predicted, truth = np.concatenate(predicted), np.concatenate(truth)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    return {"accuracy": float(np.mean(predicted == truth)), "n": int(len(truth)),
            "confusion": confusion.tolist()}


def format_confusion(confusion):
    """The confusion matrix as text (rows: true class, columns: predicted class)."""
    confusion = np.asarray(confusion)
    lines = ["true \\ predicted " + " ".join(f"{j:>5d}" for j in range(len(confusion)))]
    lines += [f"{i:>17d} " + " ".join(f"{v:>5d}" for v in row) for i, row in enumerate(confusion)]
    return "\n".join(lines)


def _repeats(n):
    return f"{n} repeat" + ("" if n == 1 else "s")


def format_table(results):
    """A plain-text table of :func:`reference_protocol` / :func:`full_test_set` results."""
    def cell(s):
        return f"{s['mean']:.2f}" + (f" +- {s['se']:.2f}" if s.get("se") is not None else "")
    lines = []
    subset = results.get("subset")
    if subset:
        n = subset.get("images", 100)
        lines.append("Reference protocol (the reference's 100-image test subset, static "
                     "binarisation)" if subset.get("rule", "reference") == "reference" else
                     f"Reference protocol on this data's subset ({n} test images, the first of "
                     f"each class)")
        for name in ("nelbo", "kl", "rec"):
            repeats = _repeats(subset[name]["n"])
            lines.append(f"  {name.upper():<14} {cell(subset[name])}   ({repeats})")
        for m, s in subset["niwae"].items():
            lines.append(f"  {'-IWAE-' + str(m):<14} {cell(s)}   ({_repeats(s['n'])})")
    classifier = results.get("classifier")
    if classifier:
        lines.append(f"Test accuracy ({classifier['n']:,} continuous test images): "
                     f"{classifier['accuracy']:.4f}")
        lines.append(format_confusion(classifier["confusion"]))
    check = results.get("sample_check")
    if check:
        lines.append(f"Conditional samples recognised as their class: {check['accuracy']:.4f} "
                     f"of {check['n']} (checking classifier's test accuracy: "
                     f"{check['checker_test_accuracy']:.4f})")
        lines.append(format_confusion(check["confusion"]))
    full = results.get("full_test")
    if full:
        n = next(iter(full.values()))["n"]
        kind = "binarised once, seed 0" if results.get("binarized", not check) else "continuous"
        lines.append(f"Full test set ({n:,} images, {kind}" +
                     (", bounds of -log p(x | y))" if check else ")"))
        for name, s in full.items():
            label = name.upper() if name == "nelbo" else "-IWAE-" + name.split("_")[1]
            lines.append(f"  {label:<14} {cell(s)}   (+- = standard error over {s['n']} images)")
    nll = results.get("nll")
    if nll:
        lines.append(f"Test NLL, the papers' metric (-IWAE-{nll['samples']} of {nll['n']:,} test "
                     f"images, {results.get('nll_eval_seconds', 0):.0f} s)")
        lines.append(f"  {'NLL':<14} {cell(nll)}   (+- = standard error over {nll['n']} images)")
    return "\n".join(lines)
