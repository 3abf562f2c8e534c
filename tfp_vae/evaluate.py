"""The evaluation protocol of CS236 HW2 (REFERENCE.md section 7), and the full test set.

Works on anything that offers the two bounds as per-example functions, a Keras model
(:func:`model_bounds`) or a loaded SavedModel (:func:`saved_model_bounds`):

* ``negative_elbo(x, seed) -> (value, kl, rec)``, each of shape (B,);
* ``negative_iwae(x, m, seed) -> (value, kl, rec)``.

Reference protocol on the fixed, statically binarised 100-image subset: the NELBO, KL and Rec
are averages of 100 calls (each a mean over the 100 images, one z each); the negative IWAE-m for
m = 1, 10, 100, 1000 averages max(100 // m, 1) calls. We also give the standard error over the
repeats, and on the full test set the mean NELBO and negative IWAE-100 with the standard error
over images. On data other than MNIST the same protocol runs on the subset of
:func:`tfp_vae.data.test_subset` (about 100 images: the first of each class), binarised for
Bernoulli models and continuous for Gaussian ones.
"""

import math
import time

import keras
import numpy as np
import tensorflow as tf

from tfp_vae import data, networks
from tfp_vae.config import IWAE_SAMPLES


def model_bounds(model, jit_compile=False):
    """The two bound functions of a Keras model, compiled with ``tf.function`` (with XLA if
    ``jit_compile``; not by default: it measured no faster, ``benchmarks/iwae_eval.py --jit=0,1``,
    and the SavedModel's signatures, which ``bin/evaluate`` runs, would then disagree in the last
    digits). For a model of log p(x | y) (``data_kind == "supervised"``) they take the labels
    after x."""
    specs = [tf.TensorSpec([None, model.x_dim], tf.float32)]
    if model.data_kind == "supervised":
        specs.append(tf.TensorSpec([None], tf.int32))
    seed_spec = tf.TensorSpec([2], tf.int32)
    # autograph=False: the bounds have no Python control flow on tensors (their loops are
    # tf.while_loop), and converting them is part of the 1.3 s per run of docs/performance.md.
    elbo = tf.function(lambda *args: tuple(model.negative_elbo(*args)),
                       input_signature=[*specs, seed_spec], jit_compile=jit_compile,
                       autograph=False)
    iwae = tf.function(lambda *args: tuple(model.negative_iwae(*args)),
                       input_signature=[*specs, tf.TensorSpec([], tf.int32), seed_spec],
                       jit_compile=jit_compile, autograph=False)
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


def evaluate(data_kind, negative_elbo, negative_iwae, dataset, binarized=True, repeats=100,
             iwae_samples=IWAE_SAMPLES, full_test=True, classify=None, sampler=None,
             check_steps=3000, seed=0, nll_samples=0):
    """The evaluation of one model, by its kind of data (``model.data_kind``), on the test split
    of ``dataset`` (an :class:`~tfp_vae.sources.ImageSet`), binarised for Bernoulli models
    (``binarized``).

    * ``"unsupervised"`` (VAE, GMVAE): the reference protocol on the evaluation subset
      (:func:`reference_protocol`, :func:`tfp_vae.data.test_subset`) and, with ``full_test``,
      the whole test split.
    * ``"semisupervised"`` (SSVAE): the accuracy of ``classify`` (images -> class
      probabilities) on the continuous test images, the reference metric, with the confusion
      matrix; with ``full_test``, the bounds on the test split.
    * ``"supervised"`` (FSVAE): with ``full_test``, the bounds of -log p(x | y) on the test
      split; and, given a ``sampler`` (a model with ``sample_labels``), how often a checking
      classifier (:func:`train_check_classifier`, ``check_steps`` steps) recognises its samples
      (:func:`conditional_sample_accuracy`), both with ``seed``.

    * ``nll_samples``: also the papers' test NLL, :func:`test_log_likelihood` with that many
      samples (``"nll"``; of -log p(x | y) for the FSVAE).

    Arguments a kind does not use are ignored (``classify`` outside the SSVAE, ``sampler``
    outside the FSVAE), so callers may pass them for every model.

    Returns:
      The dictionary that ``evaluation.json`` holds, with the seconds each part took.
    """
    results = {"binarized": bool(binarized)}

    def timed(name, fn):
        t0 = time.time()
        results[name] = fn()
        results[f"{name}_eval_seconds"] = round(time.time() - t0, 2)

    if data_kind == "supervised":
        if full_test:
            timed("full_test", lambda: full_test_set(
                negative_elbo, negative_iwae, data.test_batches(dataset, binarized),
                with_labels=True))
        if sampler is not None:
            timed("sample_check", lambda: conditional_sample_accuracy(
                sampler, train_check_classifier(dataset, check_steps, seed=seed), per_class=100,
                seed=seed))
        if nll_samples:  # of -log p(x | y)
            timed("nll", lambda: test_log_likelihood(
                negative_iwae, data.test_batches(dataset, binarized), nll_samples,
                with_labels=True))
        return results
    if data_kind == "semisupervised":
        timed("classifier", lambda: classifier_accuracy(
            classify, data.test_batches(dataset, binarized=False), dataset.num_classes))
    else:
        x_subset, _ = data.test_subset(dataset, binarized)
        timed("subset", lambda: reference_protocol(negative_elbo, negative_iwae, x_subset, seed=0,
                                                   repeats=repeats, iwae_samples=iwae_samples))
        results["subset"].update(rule="reference" if dataset.reference else "first per class",
                                 images=len(x_subset))
    if full_test:
        timed("full_test", lambda: full_test_set(negative_elbo, negative_iwae,
                                                 data.test_batches(dataset, binarized)))
    if nll_samples:
        timed("nll", lambda: test_log_likelihood(negative_iwae,
                                                 data.test_batches(dataset, binarized),
                                                 nll_samples))
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
    pictures = model.sample_labels(labels, tf.constant([seed, 17], tf.int32))
    result = classifier_accuracy(probs, [(pictures[model.picture_keys[0]].numpy(), labels)],
                                 model.num_classes)
    result["checker_test_accuracy"] = checker_accuracy
    return result


def classifier_accuracy(predict_probs, batches, num_classes=10):
    """Accuracy of argmax ``predict_probs(x)`` over ``(x, labels)`` batches, and the confusion
    matrix (rows: true class, columns: predicted class)."""
    predicted, truth = [], []
    for x, y in batches:
        predicted.append(np.argmax(predict_probs(tf.convert_to_tensor(x, tf.float32)), -1))
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
            lines.append(f"  {name.upper():<14} {cell(subset[name])}   ({_repeats(subset[name]['n'])})")
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
