"""What a model trains and is evaluated on, by the kind of data it takes (a registry kind's
``task``): its training stream, its validation batch and its evaluation.

* :class:`Unsupervised` (VAE, GMVAE, VampPrior, beta-VAE): images; the reference protocol on the
  evaluation subset (docs/reference.md, section 7) and the full test split.
* :class:`SemiSupervised` (SSVAE): a few labelled images and many unlabelled ones; the accuracy
  of q(y | x) on the test images and the bound with the label summed out.
* :class:`Supervised` (FSVAE): images with their labels, a model of p(x | y); the bounds of
  -log p(x | y) and how often a checking classifier recognises the conditional samples.

Each evaluates anything with the model's small interface (a Keras model or a loaded SavedModel,
:class:`tfp_vae.saved.SavedVAE`): ``negative_elbo``, ``negative_iwae``, ``classify``,
``sample_labels``.
"""

import time

import numpy as np

from tfp_vae import data, evaluate
from tfp_vae.errors import ConfigError


# The most classes of a labelled model: the label is one-hot in both networks, the SSVAE's bound
# sums over every class, and the evaluation draws 100 samples of each class and a K x K
# confusion matrix.
MAX_CLASSES = 10_000


class Task:
    """The unsupervised task; the others override what differs."""
    name = "unsupervised"
    labelled = False           # needs labelled data
    bounds_take_labels = False  # its bounds are of -log p(x | y)

    def check(self, kind, dataset):
        """Raises ConfigError when the ``kind`` cannot train on ``dataset``."""
        if not self.labelled:
            return
        if not dataset.labelled:
            raise ConfigError(f"the {kind} needs labels, but {dataset.name} ({dataset.source}) "
                              f"has none; give the data labels, or train an unsupervised model.")
        if dataset.num_classes < 2:
            raise ConfigError(f"the {kind} needs at least 2 classes; {dataset.name} has "
                              f"{dataset.num_classes}.")
        if dataset.num_classes > MAX_CLASSES:
            raise ConfigError(f"the {kind} takes at most {MAX_CLASSES:,} classes; "
                              f"{dataset.name}'s labels number {dataset.num_classes:,} (one more "
                              f"than the largest). Number the classes 0..K-1 without gaps, or "
                              f"train an unsupervised model.")
        counts = np.bincount(np.asarray(dataset.train_labels), minlength=dataset.num_classes)
        empty = np.flatnonzero(counts == 0)
        if len(empty):  # its conditional samples and scores would count classes it never saw
            shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
            raise ConfigError(f"the {kind} needs training images of every class 0.."
                              f"{dataset.num_classes - 1}; {dataset.name} has none of "
                              f"{len(empty)} of them (labels {shown}). Number the classes "
                              f"0..K-1 without gaps.")

    def stream(self, dataset, batch_size, seed, binarized, start_step=0, **hypers):
        """The training stream from ``start_step`` on: images (b, D) in [0, 1]."""
        return data.train_dataset(dataset.train_images, batch_size, seed, start_step, binarized)

    def validation(self, dataset, binarized):
        """The held-out batch of the validation curve (the first 1,000 test images)."""
        return data.validation_set(dataset, binarized)[0]

    def evaluate(self, model, dataset, binarized, settings):
        """The evaluation dictionary of ``model`` on ``dataset``'s test split.

        ``settings`` gives ``seed``, ``eval_repeats``, ``iwae_samples``, ``full_test``,
        ``nll_samples`` (and the kind's ``check_steps``)."""
        results = {"binarized": bool(binarized)}
        elbo, iwae = evaluate.bounds(model, self.bounds_take_labels)
        self._specific(results, model, elbo, iwae, dataset, binarized, settings)

        def batches():
            return data.test_batches(dataset, binarized)
        if settings.full_test:
            _timed(results, "full_test", lambda: evaluate.full_test_set(
                elbo, iwae, batches(), with_labels=self.bounds_take_labels))
        if settings.nll_samples:
            _timed(results, "nll", lambda: evaluate.test_log_likelihood(
                iwae, batches(), settings.nll_samples, with_labels=self.bounds_take_labels))
        return results

    def _specific(self, results, model, elbo, iwae, dataset, binarized, settings):
        x_subset, _ = data.test_subset(dataset, binarized)
        _timed(results, "subset", lambda: evaluate.reference_protocol(
            elbo, iwae, x_subset, seed=0, repeats=settings.eval_repeats,
            iwae_samples=settings.iwae_samples))
        results["subset"].update(rule="reference" if dataset.reference else "first per class",
                                 images=len(x_subset))


class SemiSupervised(Task):
    name = "semisupervised"
    labelled = True

    def stream(self, dataset, batch_size, seed, binarized, start_step=0, labels_per_class=10,
               **hypers):
        """Dicts of an unlabelled batch and all labelled images
        (:func:`tfp_vae.data.semisupervised_dataset`)."""
        xl, yl = data.labelled_subset(dataset, labels_per_class)
        return data.semisupervised_dataset(dataset.train_images, dataset.train_labels, xl, yl,
                                           batch_size, seed, start_step, binarized)

    def validation(self, dataset, binarized):
        return data.validation_set(dataset, binarized)

    def _specific(self, results, model, elbo, iwae, dataset, binarized, settings):
        _timed(results, "classifier", lambda: evaluate.classifier_accuracy(
            model.classify, data.test_batches(dataset, binarized=False), dataset.num_classes))


class Supervised(Task):
    name = "supervised"
    labelled = True
    bounds_take_labels = True

    def stream(self, dataset, batch_size, seed, binarized, start_step=0, **hypers):
        """``(images, labels)`` batches."""
        return data.train_dataset(dataset.train_images, batch_size, seed, start_step, binarized,
                                  labels=dataset.train_labels)

    def validation(self, dataset, binarized):
        return data.validation_set(dataset, binarized)

    def _specific(self, results, model, elbo, iwae, dataset, binarized, settings):
        _timed(results, "sample_check", lambda: evaluate.conditional_sample_accuracy(
            model, evaluate.train_check_classifier(dataset, settings.check_steps,
                                                   seed=settings.seed),
            per_class=100, seed=settings.seed))


TASKS = {task.name: task for task in (Task(), SemiSupervised(), Supervised())}


def get(name):
    """The task called ``name`` (a registry kind's ``task``)."""
    return TASKS[name]


def of(model):
    """The task of ``model`` (an instance or class of a registry kind, or a subclass of one)."""
    from tfp_vae import registry
    cls = model if isinstance(model, type) else type(model)
    return get(registry.get(registry.kind_of(cls)).task)


def _timed(results, name, fn):
    t0 = time.time()
    results[name] = fn()
    results[f"{name}_eval_seconds"] = round(time.time() - t0, 2)
