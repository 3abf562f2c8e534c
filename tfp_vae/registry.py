"""The model kinds, each declared once: its class, its own hyperparameters and its traits.

Everything that differs by kind outside the model class derives from :data:`KINDS`: the flags of
``bin/train`` (one per hyperparameter), the checks of the settings, the run name, ``config.json``,
the settings a resumed run must share, the kinds an export and ``pretrained:KIND`` accept, and
the defaults of a training run (the reference's). Adding a model is one module under
``tfp_vae/models/`` and one :class:`Kind` line below (``docs/design.md``, "Adding a model").

No TensorFlow here: the tools check their flags against this table before importing it.
"""

import dataclasses
import importlib
import math
import numbers

from tfp_vae.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Hyper:
    """A setting of one kind (a ``bin/train`` flag of the same name).

    Attributes:
      name: the flag, the ``config.json`` key and, with ``model_arg``, the constructor argument.
      default: its value when not given; its type (int or float) is the flag's type.
      help: the flag's help text.
      minimum: the smallest value allowed (``strict``: the value must exceed it).
      model_arg: passed to the model's constructor (else read by the data or the evaluation).
      identity: a resumed run must have the value it was started with.
      names_run: shown in the run name when it differs from ``default`` (``Kind.names`` lists the
        ones always shown).
      short: its name in the run name, if not ``name``.
      latent: a size of the latent besides ``z`` (the two-layer VAE's h2): the model's latent is
        ``z`` plus these, as the memory check counts it.
    """
    name: str
    default: object
    help: str
    minimum: float = 0
    strict: bool = True
    model_arg: bool = True
    identity: bool = True
    names_run: bool = True
    short: str = None
    latent: bool = False

    def check(self, value):
        """``value`` of the flag's type within bounds, else a ConfigError naming the flag."""
        return check_number(self.name, value, type(self.default), self.minimum, self.strict)


def check_number(name, value, kind, minimum=0, strict=False, maximum=None, error=ConfigError,
                 flag=True):
    """``value`` as ``kind`` (int: a whole number, 2.0 passes and 2.5 or True do not; float: a
    finite number; NumPy's numbers too) above ``minimum`` (or at it, unless ``strict``; any, if
    ``minimum`` is None) and at most ``maximum``; else ``error`` naming ``--name`` (``name`` for
    a function's argument, with ``flag=False``). The one check of a number for the flags, the
    settings, the models and the data."""
    try:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and \
            (kind is float or float(value).is_integer()) and math.isfinite(value)
    except (TypeError, OverflowError):
        ok = False
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        what = "a whole number" if kind is int else "a finite number"
        low, high = (f"{v:g}" if isinstance(v, float) else v for v in (minimum, maximum))
        if maximum is not None:
            bound = f" in {low}..{high}"
        else:
            bound = "" if minimum is None else f" {'>' if strict else '>='} {low}"
        raise error(f"{'--' if flag else ''}{name} must be {what}{bound}, got {value!r}.")
    return kind(value)


@dataclasses.dataclass(frozen=True)
class Kind:
    """A model kind: what ``--model=NAME`` trains.

    Attributes:
      name: the ``--model`` value.
      model: the class, as ``"module:Class"`` (imported on first use).
      summary: one line for ``--help`` and the docs.
      task: the data it trains on: ``"unsupervised"`` (images), ``"supervised"`` (images and
        their labels, of which it models p(x | y)) or ``"semisupervised"`` (a few labels, many
        unlabelled images); see :mod:`tfp_vae.tasks`.
      hypers: its own settings besides the latent size ``z``.
      names: the settings its run name always shows (the reference's names).
      components: the hyperparameter that counts its prior's mixture components, if any.
      z, iter_max, batch_size: the reference's defaults.
      dataset: the data when none is given.
      likelihood: p(x | z) when none is given (None: by the data, Bernoulli for grey images).
      xla: whether ``--jit_compile=auto`` compiles its step (measured faster on CPU).
      objectives: the training objectives it takes (``--objective``).
      archs: the networks it takes (``--arch``); None: every one.
    """
    name: str
    model: str
    summary: str
    task: str = "unsupervised"
    hypers: tuple = ()
    names: tuple = ("z",)
    components: str = None
    z: int = 10
    iter_max: int = 20000
    batch_size: int = 97
    dataset: str = "mnist"
    likelihood: str = None
    xla: bool = True
    objectives: tuple = ("elbo", "iwae")
    archs: tuple = None

    def model_class(self):
        """The model's class (imports TensorFlow)."""
        module, name = self.model.split(":")
        return getattr(importlib.import_module(module), name)

    def sizes(self):
        """The constructor arguments in each of which the parameter count is affine (the
        latent's sizes and the prior's components): what :func:`tfp_vae.memory.parameter_count`
        interpolates in."""
        return ("z_dim", *(h.name for h in self.hypers if h.latent),
                *((self.components,) if self.components else ()))

    def latent_width(self, values):
        """The width of the model's latent from its constructor arguments ``values``: ``z_dim``
        and the latent's other sizes (:attr:`Hyper.latent`)."""
        return int(values["z_dim"]) + sum(int(values[h.name]) for h in self.hypers if h.latent)

    def hyper(self, name):
        """The :class:`Hyper` called ``name``, or None."""
        return next((h for h in self.hypers if h.name == name), None)


# The networks of --arch: the dense ones (tfp_vae.networks.DENSE_ARCHS, keyed by these names; a
# test checks the two agree) and the convolutional one.
DENSE_ARCHS = ("mlp", "gated", "burda")
ARCHS = DENSE_ARCHS + ("conv",)

K = Hyper("k", 500, "Mixture components of the GMVAE's learned prior.")
PSEUDO_INPUTS = Hyper("pseudo_inputs", 500, "Number K of the VampPrior's pseudo-inputs u_k.")
GW = Hyper("gw", 1.0, "SSVAE: weight of the unlabelled negative ELBO (0 trains the classifier "
           "on the labels alone).", strict=False)
CW = Hyper("cw", 100.0, "SSVAE: weight of the labelled cross-entropy.", strict=False)
LABELS = Hyper("labels_per_class", 10, "SSVAE: labelled training images per class (on MNIST, "
               "10 takes the reference's 100; elsewhere a seeded draw).", model_arg=False,
               short="labels")
CHECK_STEPS = Hyper("check_steps", 3000, "FSVAE: training steps of the small classifier that "
                    "checks whether the conditional samples show their class.", model_arg=False,
                    identity=False, names_run=False)

Z2 = Hyper("z2", 50, "Size of the top stochastic layer h2.", latent=True)

KINDS = {kind.name: kind for kind in (
    Kind("vae", "tfp_vae.models.vae:VAE", "N(0, I) prior, diagonal-Gaussian encoder, Bernoulli "
         "decoder (Kingma & Welling, 2014)"),
    Kind("gmvae", "tfp_vae.models.gmvae:GMVAE", "the VAE with a learned uniform mixture of k "
         "Gaussians as prior", hypers=(K,), names=("z", "k"), components="k"),
    Kind("vampprior", "tfp_vae.models.vampprior:VampPrior", "the VAE with the VampPrior, a mixture "
         "of its own posteriors at K learned pseudo-inputs (Tomczak & Welling, 2018)",
         hypers=(PSEUDO_INPUTS,), names=("z", "pseudo_inputs"), components="pseudo_inputs"),
    Kind("ssvae", "tfp_vae.models.ssvae:SSVAE", "Kingma et al.'s (2014) M2: semi-supervised, "
         "100 labels", task="semisupervised", hypers=(GW, CW, LABELS), names=("gw", "cw"), z=64,
         iter_max=30000, objectives=("elbo",)),
    Kind("fsvae", "tfp_vae.models.fsvae:FSVAE", "conditional VAE of log p(x | y), fixed-variance "
         "Gaussian decoder (SVHN; or MNIST)", task="supervised", hypers=(CHECK_STEPS,),
         names=("dataset",), iter_max=1_000_000, batch_size=100, dataset="svhn",
         likelihood="gaussian", objectives=("elbo",)),
    Kind("two_layer_vae", "tfp_vae.models.two_layer:TwoLayerVAE", "the VAE with two stochastic "
         "layers, p(x | h1) p(h1 | h2) p(h2) (Burda et al., 2016)", hypers=(Z2,),
         names=("z", "z2"), z=100, archs=DENSE_ARCHS),
    Kind("beta_vae", "tfp_vae.models.beta_vae:BetaVAE", "the VAE trained on rec + beta * KL "
         "(Higgins et al., 2017)", objectives=("elbo",), hypers=(Hyper(
             "beta", 4.0, "beta-VAE: the weight of the KL term in training.", strict=False,
             names_run=False),)),
)}


def get(name):
    """The :class:`Kind` called ``name``; ConfigError naming the choices otherwise."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(sorted(KINDS))}.") \
            from None


def hypers():
    """Every kind's hyperparameters by name (one flag each; kinds may share one, e.g. none do
    yet), with the kinds that take it: ``{name: (Hyper, [kind names])}``."""
    found = {}
    for kind in KINDS.values():
        for hyper in kind.hypers:
            found.setdefault(hyper.name, (hyper, []))[1].append(kind.name)
    return found


def kind_of(model_class):
    """The name of the kind whose class is ``model_class`` (or an ancestor of it, for a user's
    subclass); None for a class outside the registry."""
    for cls in model_class.__mro__:
        path = f"{cls.__module__}:{cls.__qualname__}"
        for kind in KINDS.values():
            if kind.model == path:
                return kind.name
    return None
