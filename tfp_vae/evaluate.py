"""The evaluation protocol of CS236 HW2 (REFERENCE.md section 7), and the full test set.

Works on anything that offers the two bounds as per-example functions, a Keras model
(:func:`model_bounds`) or a loaded SavedModel (:func:`saved_model_bounds`):

* ``negative_elbo(x, seed) -> (value, kl, rec)``, each of shape (B,);
* ``negative_iwae(x, m, seed) -> (value, kl, rec)``.

Reference protocol on the fixed, statically binarised 100-image subset: the NELBO, KL and Rec
are averages of 100 calls (each a mean over the 100 images, one z each); the negative IWAE-m for
m = 1, 10, 100, 1000 averages max(100 // m, 1) calls. We also give the standard error over the
repeats, and on the full 10k test set the mean NELBO and negative IWAE-100 with the standard error
over images.
"""

import math
import time

import keras
import numpy as np
import tensorflow as tf

from tfp_vae import data, networks

IWAE_SAMPLES = (1, 10, 100, 1000)


def model_bounds(model):
    """The two bound functions of a Keras model, compiled with ``tf.function``. For a model of
    log p(x | y) (``data_kind == "supervised"``) they take the labels after x."""
    specs = [tf.TensorSpec([None, model.x_dim], tf.float32)]
    if model.data_kind == "supervised":
        specs.append(tf.TensorSpec([None], tf.int32))
    seed_spec = tf.TensorSpec([2], tf.int32)
    elbo = tf.function(lambda *args: tuple(model.negative_elbo(*args)),
                       input_signature=[*specs, seed_spec])
    iwae = tf.function(lambda *args: tuple(model.negative_iwae(*args)),
                       input_signature=[*specs, tf.TensorSpec([], tf.int32), seed_spec])
    return elbo, iwae


def saved_model_bounds(loaded, conditional=False):
    """The two bound functions of a SavedModel loaded with ``tf.saved_model.load``; with
    ``conditional`` (the FSVAE) they take the labels after x. Each returns the bound first, then
    its parts in the order of their names (``kl``, ``rec`` for the Bernoulli models)."""
    def parts(out, first):
        return (out[first],) + tuple(out[k] for k in sorted(out) if k != first)

    def elbo(x, *rest):
        inputs = dict(zip(("y", "seed") if conditional else ("seed",), rest))
        return parts(loaded.negative_elbo(x=x, **inputs), "nelbo")

    def iwae(x, *rest):
        inputs = dict(zip(("y", "m", "seed") if conditional else ("m", "seed"), rest))
        return parts(loaded.negative_iwae(x=x, **inputs), "niwae")
    return elbo, iwae


def evaluate(data_kind, negative_elbo, negative_iwae, dataset, repeats=100,
             iwae_samples=IWAE_SAMPLES, full_test=True, classify=None, sampler=None,
             check_steps=3000, seed=0):
    """The evaluation of one model, by its kind of data (``model.data_kind``).

    * ``"unsupervised"`` (VAE, GMVAE): the reference protocol on the 100-image subset
      (:func:`reference_protocol`) and, with ``full_test``, the binarised 10k test set.
    * ``"semisupervised"`` (SSVAE): the accuracy of ``classify`` (images -> class
      probabilities) on the 10k continuous test images, the reference metric, with the confusion
      matrix; with ``full_test``, the bounds on the binarised test set.
    * ``"supervised"`` (FSVAE): with ``full_test``, the bounds of -log p(x | y) on the continuous
      test set; and, given a ``sampler`` (a model with ``sample_labels``), how often a checking
      classifier (:func:`train_check_classifier`, ``check_steps`` steps) recognises its samples
      (:func:`conditional_sample_accuracy`), both with ``seed``.

    Arguments a kind does not use are ignored (``classify`` outside the SSVAE, ``sampler``
    outside the FSVAE), so callers may pass them for every model.

    Returns:
      The dictionary that ``evaluation.json`` holds, with the seconds each part took.
    """
    results = {}

    def timed(name, fn):
        t0 = time.time()
        results[name] = fn()
        results[f"{name}_eval_seconds"] = round(time.time() - t0, 2)

    if data_kind == "supervised":
        x_test = data.to_unit_interval(dataset.test_images)
        y_test = dataset.test_labels.astype(np.int32)
        if full_test:
            timed("full_test", lambda: full_test_set(negative_elbo, negative_iwae, x_test, y_test))
        if sampler is not None:
            timed("sample_check", lambda: conditional_sample_accuracy(
                sampler, train_check_classifier(dataset, check_steps, seed=seed), per_class=100,
                seed=seed))
        return results
    if data_kind == "semisupervised":
        timed("classifier", lambda: classifier_accuracy(
            classify, data.to_unit_interval(dataset.test_images), dataset.test_labels))
    else:
        x_subset, _ = data.test_subset(dataset)
        timed("subset", lambda: reference_protocol(negative_elbo, negative_iwae, x_subset, seed=0,
                                                   repeats=repeats, iwae_samples=iwae_samples))
    if full_test:
        x_test, _ = data.full_test_set(dataset)
        timed("full_test", lambda: full_test_set(negative_elbo, negative_iwae, x_test))
    return results


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


def full_test_set(negative_elbo, negative_iwae, x, *labels, seed=0, iwae_samples=100,
                  batch_size=500):
    """Mean NELBO (one z per image) and negative IWAE-``iwae_samples`` over all images of ``x``
    (for conditional bounds, pass the labels after ``x``), with the standard error over images."""
    nelbo, niwae = [], []
    for start in range(0, len(x), batch_size):
        batch = [tf.convert_to_tensor(x[start:start + batch_size], tf.float32)]
        batch += [tf.convert_to_tensor(y[start:start + batch_size], tf.int32) for y in labels]
        nelbo.append(negative_elbo(*batch, tf.constant([seed, start], tf.int32))[0].numpy())
        niwae.append(negative_iwae(*batch, tf.constant(iwae_samples),
                                   tf.constant([seed + 1, start], tf.int32))[0].numpy())
    return {"nelbo": _summary(np.concatenate(nelbo)),
            f"niwae_{iwae_samples}": _summary(np.concatenate(niwae))}


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
    net = keras.Model(inputs, networks.MLP(dim, networks.HIDDEN["v1"], 10, "relu")(inputs))
    net.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    stream = data.train_dataset(dataset.train_images, batch_size, seed + 7, binarized=False,
                                labels=dataset.train_labels)
    net.fit(stream, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    probs = tf.function(lambda x: tf.nn.softmax(net(x)),
                        input_signature=[tf.TensorSpec([None, dim], tf.float32)])
    test = classifier_accuracy(probs, data.to_unit_interval(dataset.test_images),
                               dataset.test_labels)
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
    pictures = model.sample_labels(labels, tf.constant([seed, 17], tf.int32))
    result = classifier_accuracy(probs, pictures[model.picture_keys[0]].numpy(), labels,
                                 model.num_classes)
    result["checker_test_accuracy"] = checker_accuracy
    return result


def classifier_accuracy(predict_probs, x, y, num_classes=10, batch_size=1000):
    """Accuracy of argmax ``predict_probs(x)`` against labels ``y``, and the confusion matrix
    (rows: true class, columns: predicted class)."""
    predicted = np.concatenate([
        np.argmax(predict_probs(tf.convert_to_tensor(x[i:i + batch_size], tf.float32)), -1)
        for i in range(0, len(x), batch_size)])
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (np.asarray(y, np.int64), predicted), 1)
    return {"accuracy": float(np.mean(predicted == y)), "n": int(len(y)),
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
        lines.append("Reference protocol (100-image test subset, static binarisation)")
        for name in ("nelbo", "kl", "rec"):
            lines.append(f"  {name.upper():<14} {cell(subset[name])}   ({_repeats(subset[name]['n'])})")
        for m, s in subset["niwae"].items():
            lines.append(f"  {'-IWAE-' + str(m):<14} {cell(s)}   ({_repeats(s['n'])})")
    classifier = results.get("classifier")
    if classifier:
        lines.append(f"Test accuracy (10,000 continuous test images): "
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
        lines.append(f"Full test set ({n:,} images, " + (
            "continuous, bounds of -log p(x | y))" if check else "binarised once, seed 0)"))
        for name, s in full.items():
            label = name.upper() if name == "nelbo" else "-IWAE-" + name.split("_")[1]
            lines.append(f"  {label:<14} {cell(s)}   (+- = standard error over {s['n']} images)")
    return "\n".join(lines)
