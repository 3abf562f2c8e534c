"""The SSVAE of CS236 HW2: Kingma et al.'s (2014) M2 model, semi-supervised with 100 labels."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_vae import bounds, networks
from tfp_vae.models import base, conditional

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="tfp_vae")
class SSVAE(conditional.ConditionalVAE):
    """M2: p(y) uniform over the classes (10 for MNIST), p(z) = N(0, I), p(x | z, y) Bernoulli
    (or Gaussian); the inference networks are a classifier q(y | x) and a Gaussian encoder
    q(z | x, y).

    Objective of one step (docs/reference.md, section 4), on a batch of unlabelled images xu and the
    labelled set (xl, yl)::

        loss = gw * mean_u[-ELBO(xu)] + cw * mean_l[-log q(yl | xl)]

    where -ELBO(xu) sums the label out exactly under q(y | xu)
    (:func:`tfp_vae.bounds.negative_elbo_marginal_label`); ``gw = 0`` skips it entirely.

    Training data: dicts ``{"x": unlabelled images, "x_labelled", "y_labelled"}`` (integer labels),
    optionally with ``"y"``, the true labels of the unlabelled images, used only to report the
    classifier's training accuracy (see :func:`tfp_vae.data.semisupervised_dataset`). Evaluation
    data: ``(images, labels)``.
    """

    metric_names = ("nelbo", "kl_z", "kl_y", "rec", "ce", "acc")
    bound_names = ("nelbo", "kl_z", "kl_y", "rec")

    def __init__(self, z_dim=64, gw=1.0, cw=100.0, **kwargs):
        self.gw, self.cw = float(gw), float(cw)
        if self.gw < 0 or self.cw < 0:
            raise ValueError(f"gw and cw must be non-negative, got gw={gw}, cw={cw}.")
        if self.gw == 0:  # no bound is computed, so none is reported
            self.metric_names = ("ce", "acc")
        super().__init__(z_dim=z_dim, **kwargs)

    def make_extra_layers(self):
        self.classifier = networks.classifier(self.arch, self.image_shape, self.num_classes,
                                              nn=self.nn, name="classifier")

    def get_config(self):
        return {**super().get_config(), "gw": self.gw, "cw": self.cw}

    def describe(self):
        rows = super().describe()
        rows[-1] = ("objective", f"{self.gw:g} x negative ELBO of the unlabelled images (labels "
                                 f"enumerated, analytic KL) + {self.cw:g} x cross-entropy of the "
                                 f"labelled ones")
        return rows[:2] + [("q(y | x)", f"categorical over {self.num_classes} classes, "
                                        f"{self.arch} classifier"),
                           ("p(y)", f"uniform over {self.num_classes} classes")] + rows[2:]

    # ----------------------------------------------------------------------- distributions
    def label_prior(self):
        """p(y): uniform over the classes."""
        return tfd.Categorical(logits=tf.zeros([self.num_classes]))

    def classify(self, x):
        """q(y | x): a Categorical over the classes."""
        return self.classifier(x)

    def call(self, x, training=False):
        """Class probabilities q(y | x)."""
        return self.classify(self.check_inputs(x)).probs_parameter()

    # --------------------------------------------------------------------------------- bounds
    def negative_elbo(self, x, y=None, seed=None, q_y=None):
        """Per-example negative ELBO: with the label summed out under q(y | x) (``q_y``, when
        the caller has it already) when ``y`` is None, the bound on -log p(x), the reference's;
        given labels ``y``, the bound on -log p(x, y) of the labelled examples (Kingma et al.,
        2014, eq. 6: the VAE's with z's prior and the label's log-prior)."""
        seed = self.fresh_seed(seed)
        x = self.check_inputs(x, base.binarize_seed(seed, base.BOUND_SALT))
        if y is not None:
            bound = super().negative_elbo(x, y, seed)
            kl_y = -self.label_prior().log_prob(self.label_indices(y))
            return bounds.SemiSupervisedBound(bound.value + kl_y, bound.kl, kl_y, bound.rec)
        return bounds.negative_elbo_marginal_label(
            x, self.classify(x) if q_y is None else q_y, lambda y: self.encode(x, y),
            self.decode, self.prior(), self.label_prior(), seed)

    def negative_iwae(self, x, num_samples, y=None, seed=None):
        """Per-example negative IWAE-m with the joint proposal q(y | x) q(z | x, y):

            -log (1/m) sum_i p(y_i) p(z_i) p(x | z_i, y_i) / (q(y_i | x) q(z_i | x, y_i)).
        """
        seed = self.fresh_seed(seed)
        x = self.check_inputs(x, base.binarize_seed(seed, base.BOUND_SALT))
        if y is not None:  # the bound on -log p(x, y), with the proposal q(z | x, y)
            iwae = super().negative_iwae(x, num_samples, y, seed)
            return bounds.Bound(iwae.value - self.label_prior().log_prob(self.label_indices(y)),
                                iwae.kl, iwae.rec)
        q_y, p_y, p_z = self.classify(x), self.label_prior(), self.prior()

        def log_weights(n, seed):
            y_seed, z_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
            y = q_y.sample(n, seed=y_seed)
            q_z = self.encode(x, y)
            z = q_z.sample(seed=z_seed)
            rec = -self.decode(z, y).log_prob(x)
            kl = q_z.log_prob(z) - p_z.log_prob(z) + q_y.log_prob(y) - p_y.log_prob(y)
            return bounds.Bound(kl + rec, kl, rec)
        return bounds.importance_weighted(log_weights, num_samples, tf.shape(x)[0], seed,
                                          self.iwae_max_rows, x.dtype)

    # -------------------------------------------------------------------------------- training
    @tf.autograph.experimental.do_not_convert  # as BaseVAE.train_step
    def train_step(self, data):
        """BaseVAE's step, on the stream of :func:`tfp_vae.data.semisupervised_dataset`, or on
        images alone (the bound, with gw > 0). ``(images, labels)`` pairs are refused: M2's
        labelled term is the classifier's on the stream's labelled set, so the labels of pairs
        would go unused (``evaluate((x, y))`` reports their cross-entropy and accuracy)."""
        labels = self._check_data(data)
        if labels is not None:
            raise ValueError(
                "the SSVAE trains on dicts of an unlabelled batch and the labelled images "
                "(tfp_vae.data.semisupervised_dataset), or with gw > 0 on images alone: the "
                "labels of (images, labels) pairs would not enter its loss (evaluate((x, y)) "
                "reports their accuracy).")
        return super().train_step(data)

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        self._check_data(data)
        return super().test_step(data)

    def _check_data(self, data):
        """The labels of a batch that is not the stream's dict (None without), after refusing
        images alone with gw = 0: then there is no bound, nothing to train or report."""
        if isinstance(data, dict):
            return None
        _, labels = base.unpack_x_y(data)
        if labels is None and not self.gw:
            raise ValueError("with gw=0 the SSVAE has no bound: it trains its classifier only, "
                             "on the labelled images of tfp_vae.data.semisupervised_dataset's "
                             "dicts, and evaluate needs (images, labels).")
        return labels

    def loss_and_terms(self, data, seed):
        """``gw * mean[-ELBO(xu)] + cw * mean[-log q(yl | xl)]`` (see the class docstring), each
        mean scaled by :func:`~tfp_vae.models.base.global_batch_mean`; reports the bound's terms,
        ``ce`` (of the labelled batch in training; of the given labels in ``model.evaluate((x,
        y))``) and, when the images come with their labels, ``acc``."""
        if isinstance(data, dict):
            xl = self.check_inputs(data["x_labelled"], base.binarize_seed(seed, 1))
            x, y = self.check_inputs(data["x"], base.binarize_seed(seed)), data.get("y")
            if self.gw > 0:  # the bound needs q(y | x): one classifier pass over both sets
                logits = self.classify(tf.concat([xl, x], 0)).logits_parameter()
                q_yl = self.classifier.head(logits[:tf.shape(xl)[0]])
                q_y = self.classifier.head(logits[tf.shape(xl)[0]:])
            else:  # q(y | x) only for the accuracy, outside the gradient
                q_yl, q_y = self.classify(xl), self.classify(tf.stop_gradient(x))
            ce = -q_yl.log_prob(tf.cast(data["y_labelled"], tf.int32))
            loss, terms = self.cw * base.global_batch_mean(ce), {"ce": ce}
        else:  # images, or (images, labels), e.g. from model.evaluate
            x, y = base.unpack_x_y(data)
            x, loss, terms = self.check_inputs(x, base.binarize_seed(seed)), 0.0, {}
            q_y = self.classify(x)
        if self.gw > 0:  # gw = 0 skips the bound entirely, as the reference
            bound = self.negative_elbo(x, seed=seed, q_y=q_y)
            loss += self.gw * self.elbo_loss(bound)
            terms.update(zip(self.bound_names, bound))
        if y is not None:
            y = self.label_indices(y, assert_range=True)
            if "ce" not in terms:  # model.evaluate((x, y)): the cross-entropy of these labels
                terms["ce"] = -q_y.log_prob(y)
            predicted = tf.argmax(q_y.logits, -1, output_type=tf.int32)
            terms["acc"] = tf.cast(tf.equal(predicted, y), tf.float32)
        return loss, terms

    # ---------------------------------------------------------------------------------- export
    def export_endpoints(self):
        endpoints = super().export_endpoints()
        endpoints.update(
            classify=(lambda x: {"probs": self.classify(x).probs_parameter()},
                      [tf.TensorSpec([None, self.x_dim], tf.float32, name="x")]),
            # n digits of each class in y, class by class
            sample=(lambda n, y, seed: self.sample_labels(tf.repeat(y, n), seed),
                    [tf.TensorSpec([], tf.int32, name="n"),
                     tf.TensorSpec([None], tf.int32, name="y"),
                     tf.TensorSpec([2], tf.int32, name="seed")]))
        return endpoints
