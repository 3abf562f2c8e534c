"""The settings of a training run and the choices they take, checked without TensorFlow.

:class:`Settings` holds every setting of a run: the fields below, common to every model, and the
hyperparameters of the chosen kind (:mod:`tfp_vae.registry`). :meth:`Settings.resolve` fills in
the kind's defaults and checks everything once; ``bin/train`` calls it before it imports
TensorFlow, so that a mistyped or impossible flag is answered at once. What a run derives from
its settings (the run name, ``config.json``, the resume identity, the model's arguments) is
here too. The choices live here, the one place the networks, models and evaluation read them
from.
"""

import dataclasses
import math
import numbers
import os
import re

from tfp_vae import recipes, registry, schedules, sources
from tfp_vae.errors import ConfigError
from tfp_vae.export import MAX_IWAE_SAMPLES  # memory is bounded by chunks, time is not

OBJECTIVES = ("elbo", "iwae")  # the negative ELBO, or the negative IWAE-K (Burda et al., 2016)
ARCHS = registry.ARCHS
LIKELIHOODS = ("bernoulli", "gaussian")
LIKELIHOOD_CHOICES = ("auto",) + LIKELIHOODS  # auto: see train.default_likelihood
STRATEGIES = ("default", "mirrored", "multiworker")
JIT_CHOICES = ("auto", "true", "false")
IWAE_SAMPLES = (1, 10, 100, 1000)  # the reference protocol's m
MAX_TRAIN_SAMPLES = 10_000  # importance samples per example in training
MAX_SEED = 2 ** 31 - 1  # the seed enters TensorFlow's stateless seeds as an int32
MAX_PEER_TIMEOUT = 7 * 24 * 3600.0  # seconds (a week): --peer_timeout's bound


def check_choice(name, value, choices, error=ValueError):
    """Raises ``error`` naming ``name``, the choices and ``value`` unless ``value`` is one of
    ``choices``: the one rule for ``arch`` and ``likelihood`` in the networks, the models and
    the settings (which name the flag and raise a ConfigError)."""
    if value not in choices:
        raise error(f"{name} must be one of {', '.join(choices)}, got {value!r}.")


def iwae_sample_counts(values, flag="--iwae_samples"):
    """The m of the subset's IWAE-m bounds as a tuple of ints, from one int, a sequence of ints,
    the strings of a comma-separated flag or one such string (``"1,1000"``, from a script): one
    or more whole numbers in 1..MAX_IWAE_SAMPLES, else a :class:`~tfp_vae.errors.ConfigError`
    naming ``flag`` (bin/train and bin/evaluate alike)."""
    if isinstance(values, str):
        values = values.split(",") if values else []
    elif isinstance(values, numbers.Number) or not hasattr(values, "__iter__"):
        values = [values]  # one number (or something to refuse by name below)
    else:
        values = list(values.tolist() if hasattr(values, "tolist") else values)
    try:  # a flag's strings, or numbers: whole ones only (2.0 passes, 2.5 and True do not)
        counts = tuple(int(m) if isinstance(m, str) else
                       registry.check_number(flag.lstrip("-"), m, int, minimum=None)
                       for m in values)
    except ValueError:  # ConfigError is one
        raise ConfigError(f"{flag} must be whole numbers, got {','.join(map(str, values))}.") \
            from None
    if not counts or any(not 0 < m <= MAX_IWAE_SAMPLES for m in counts):
        raise ConfigError(f"{flag} must be one or more numbers in 1..{MAX_IWAE_SAMPLES}, got "
                          f"{list(counts)}.")
    return counts


def check_data(spec, memory_budget):
    """Raises ConfigError for a ``--dataset`` spec or a ``--memory_budget`` that cannot be read
    (bin/train and bin/evaluate alike), before any data is."""
    sources.check_spec(spec)
    sources.parse_size(memory_budget)


# The common settings a resumed run must share with the run it continues (besides the kind's
# hyperparameters marked ``identity``): the others (length, checkpoint interval, evaluation) may
# change between starts. The data is named by where it was read from and a SHA-256 of it.
IDENTITY = ("model", "dataset", "z", "seed", "batch_size", "lr", "svhn_split", "likelihood",
            "arch", "objective", "train_samples", "kl_warmup", "free_bits", "lr_schedule",
            "adam_epsilon", "validation", "patience", "data_source", "data_sha256")


@dataclasses.dataclass(init=False)
class Settings:
    """Everything a training run needs: ``bin/train`` has one flag per field and one per
    hyperparameter of the registry.

    ``Settings(model="gmvae", k=100, iter_max=5000)``: the common fields by name, the kind's
    hyperparameters (:data:`tfp_vae.registry.KINDS`) by name too (kept in ``hypers`` and read
    as attributes, ``settings.k``). Fields left None take the kind's defaults in
    :meth:`resolve`. ``Settings(recipe="vampprior-paper/vae", iter_max=50000)``: a paper's
    protocol (:mod:`tfp_vae.recipes`), the settings given beside it overriding its own.
    """
    model: str = "vae"
    recipe: str = None    # a paper's protocol (tfp_vae.recipes): its settings, then the given
    dataset: str = None   # mnist, svhn or tfds:NAME; None: what data_dir holds, else the kind's
    z: int = None         # None: the kind's default (10; 64 for the SSVAE)
    objective: str = "elbo"   # or "iwae": train on -IWAE-train_samples (the unsupervised kinds)
    train_samples: int = 5
    kl_warmup: int = 0    # steps of the KL weight's linear rise from 0 to 1 (0: none)
    free_bits: float = 0.0  # train on rec + max(free_bits, mean KL) (0: none)
    validation: int = 0   # training images held out as the validation split (data.hold_out)
    patience: int = 0     # early stopping: steps without a better val_nelbo (0: off)
    iter_max: int = None  # None: the kind's default (20000; 30000 for the SSVAE)
    epochs: int = None    # instead of iter_max: passes over the training images (train.prepare)
    iter_save: int = 10000
    run: int = 0
    seed: int = 0
    batch_size: int = None  # None: the kind's default (97; 100 for the FSVAE)
    lr: float = 1e-3
    lr_schedule: str = "constant"  # or "step:EVERY:FACTOR", "burda" (tfp_vae.schedules)
    adam_epsilon: float = 1e-7  # Adam's epsilon (Keras' default; the IWAE paper's 1e-4)
    data_dir: str = None
    svhn_split: str = "extra"
    verify_checksums: bool = True
    memory_budget: str = sources.DEFAULT_BUDGET
    pixel_max: int = None  # the white of integer images (None: 255)
    likelihood: str = "auto"  # auto: the kind's, else Bernoulli for grey, Gaussian for colour
    arch: str = "mlp"
    out_dir: str = "runs"
    strategy: str = "default"
    devices: str = ""
    cpu_replicas: int = 0
    peer_timeout: float = 600.0  # --strategy=multiworker: seconds to wait for the other workers
    jit_compile: str = "auto"
    steps_per_execution: int = None  # None: auto (see train.resolve_steps_per_execution)
    log_every: int = 1000
    eval_repeats: int = 100
    iwae_samples: tuple = IWAE_SAMPLES
    full_test: bool = True
    nll_samples: int = 0  # the papers' test NLL, -IWAE-N of every test image (0: off)
    export: bool = True
    deterministic: bool = False
    verbose: int = None  # progress: a line per log interval (2), with a live line between (1);
    # None: 1 on a terminal, else 2; 0: none
    hypers: dict = None   # the kind's hyperparameters, by name

    def __init__(self, **values):
        # The kind's hyperparameters may come in ``hypers`` or by name: by name wins.
        values = {**(values.pop("hypers", None) or {}), **values}
        in_epochs = {}  # durations still in epochs (a recipe's, or --epochs): see to_steps
        if values.get("recipe") is not None:
            self.__dict__["_recipe_set"] = recipes.set_by(values["recipe"], values)
            values, in_epochs = recipes.apply(values["recipe"], values)
        hypers = {}
        for field in dataclasses.fields(self):
            if field.name != "hypers":
                setattr(self, field.name, values.pop(field.name, field.default))
        known = registry.hypers()
        for name, value in values.items():
            if name not in known:
                raise ConfigError(f"unknown setting {name!r}: neither a common setting nor a "
                                  f"hyperparameter of any model.")
            hypers[name] = value
        self.hypers = hypers
        self.__dict__["_in_epochs"] = in_epochs

    def __getattr__(self, name):  # the kind's hyperparameters as attributes
        hypers = self.__dict__.get("hypers") or {}
        if name in hypers:
            return hypers[name]
        raise AttributeError(f"{type(self).__name__} has no setting {name!r}")

    @property
    def kind(self):
        """The :class:`~tfp_vae.registry.Kind` of ``model``."""
        return registry.get(self.model)

    def resolve(self):
        """Fills in the kind's defaults, then raises ConfigError for the first impossible
        setting; returns self. Needs neither TensorFlow nor the data (durations in epochs are
        steps after :meth:`to_steps`)."""
        self.__dict__["_resolving"] = True  # its own assignments are not the user's
        try:
            return self._resolve()
        except ConfigError as e:
            raise self._with_recipe_note(e) from None
        finally:
            del self.__dict__["_resolving"]

    def _resolve(self):
        kind = self.kind
        self._forget_defaults()
        if self.epochs is not None:
            self.epochs = registry.check_number("epochs", self.epochs, int, strict=True)
            if self.iter_max is not None and "iter_max" not in self._in_epochs:
                raise ConfigError(f"--epochs={self.epochs} and --iter_max={self.iter_max} both "
                                  f"set the training length: give one of them.")
            self._in_epochs["iter_max"] = self.epochs
        filled = self.__dict__["_filled"] = {}  # recorded as it fills, also if a check fails
        for name in ("z", "iter_max", "batch_size"):
            if getattr(self, name) is None and name not in self._in_epochs:
                setattr(self, name, getattr(kind, name))
                filled[name] = getattr(kind, name)
        for name in self.hypers:
            if kind.hyper(name) is None:
                owners = ", ".join(registry.hypers()[name][1])
                raise ConfigError(f"--{name} is a setting of the {owners}, not of the "
                                  f"{self.model}.")
        filled["hypers"] = {h.name: h.default for h in kind.hypers if h.name not in self.hypers}
        self.hypers = {h.name: h.check(self.hypers.get(h.name, h.default)) for h in kind.hypers}
        self.out_dir = os.path.expanduser(self.out_dir)  # as --data_dir (the shell leaves '~'
        self._check_common()  # in --out_dir='~/runs' as it is)
        if self.objective not in kind.objectives:
            takes = [k.name for k in registry.KINDS.values() if self.objective in k.objectives]
            raise ConfigError(f"--objective={self.objective} trains the {', '.join(takes)}; the "
                              f"{self.model} trains on its ELBO.")
        if kind.archs and self.arch not in kind.archs:
            raise ConfigError(f"--arch={self.arch} is not a network of the {self.model}; choose "
                              f"one of {', '.join(kind.archs)}.")
        return self

    def __setattr__(self, name, value):
        filled = self.__dict__.get("_filled")
        # A setting the user gives is theirs, whatever its value (see _forget_defaults).
        if filled and not self.__dict__.get("_resolving"):
            hypers = filled.get("hypers", {})
            self.__dict__["_filled"] = {  # a new record: a copy of these Settings shares it
                key: ({k: v for k, v in hypers.items() if k != name} if key == "hypers" else v)
                for key, v in filled.items() if key != name}
        if name not in self.__dataclass_fields__ and name in registry.hypers():
            value = {**(self.__dict__.get("hypers") or {}), name: value}  # a hyperparameter
            name = "hypers"
        elif name not in self.__dataclass_fields__ and not name.startswith("_") and \
                name != "steps_per_epoch":  # to_steps' record
            raise ConfigError(f"unknown setting {name!r}: neither a common setting nor a "
                              f"hyperparameter of any model.")
        object.__setattr__(self, name, value)

    def _forget_defaults(self):
        """Undoes what an earlier :meth:`resolve` filled in from its kind's defaults and nobody
        has set since (:meth:`__setattr__` keeps the record), so that a resolved Settings whose
        ``model`` was changed resolves as a fresh one would, not with the other kind's defaults
        and hyperparameters. (A hyperparameter changed in place, ``s.hypers["k"] = v``, is
        recognised by its value only: set it as ``s.k = v``.)"""
        filled = self.__dict__.pop("_filled", {})
        hypers = filled.get("hypers", {})
        self.__dict__["hypers"] = {name: value for name, value in (self.hypers or {}).items()
                                   if not (name in hypers and value == hypers[name])}
        for name in filled:
            if name != "hypers":
                self.__dict__[name] = None

    def _with_recipe_note(self, error):
        """``error`` with a note when it names a setting the recipe chose, not the user."""
        named = [name for name in self.__dict__.get("_recipe_set", ())
                 if re.search(rf"--{name}\b", str(error))]
        if not named:
            return error
        flags = ", ".join(f"--{name}" for name in named)
        return ConfigError(f"{str(error).rstrip('.')}. (--recipe={self.recipe} sets {flags}: give "
                           f"{'it' if len(named) == 1 else 'them'} on the command line to change "
                           f"{'it' if len(named) == 1 else 'them'}.)")

    def _set(self, name):
        """Whether duration ``name`` is on: a number of steps, or epochs still to convert."""
        return bool(getattr(self, name) or self._in_epochs.get(name))

    def to_steps(self, dataset):
        """The durations still in epochs (a recipe's, ``--epochs``) as steps over ``dataset``'s
        training images (after the validation split; each epoch's last partial batch kept, as
        the stream), then the checks again; returns self. ``steps_per_epoch`` records the
        epoch."""
        self.steps_per_epoch = sources.steps_per_epoch(len(dataset.train_images),
                                                       self.batch_size)
        for name, epochs in self._in_epochs.items():
            setattr(self, name, max(1, round(epochs * self.steps_per_epoch)))
        self.__dict__["_in_epochs"] = {"iter_max": self.epochs} if self.epochs else {}
        try:
            self._check_common()
        except ConfigError as e:
            raise self._with_recipe_note(e) from None
        return self

    def _check_common(self):
        self._check_types()
        check_data(self.dataset, self.memory_budget)
        check_choice("--likelihood", self.likelihood, LIKELIHOOD_CHOICES, ConfigError)
        check_choice("--arch", self.arch, ARCHS, ConfigError)
        check_choice("--svhn_split", self.svhn_split, sources.svhn.TRAIN_SPLITS, ConfigError)
        check_choice("--objective", self.objective, OBJECTIVES, ConfigError)
        check_choice("--strategy", self.strategy, STRATEGIES, ConfigError)
        check_choice("--jit_compile", self.jit_compile, JIT_CHOICES, ConfigError)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a finite positive number, got {self.lr}.")
        self.adam_epsilon = registry.check_number("adam_epsilon", self.adam_epsilon, float,
                                                  strict=True)
        self.lr_schedule = schedules.canonical(self.lr_schedule)
        self._check_early_stopping()
        if self.kl_warmup is not None:
            self.kl_warmup = registry.check_number("kl_warmup", self.kl_warmup, int)
        self.free_bits = registry.check_number("free_bits", self.free_bits, float)
        if self.objective != "elbo" and (self._set("kl_warmup") or self.free_bits):
            raise ConfigError("--kl_warmup and --free_bits weigh the KL term of the ELBO; "
                              "--objective=iwae has none.")
        if not 0 < self.train_samples <= MAX_TRAIN_SAMPLES:
            raise ConfigError(f"--train_samples must be in 1..{MAX_TRAIN_SAMPLES}, got "
                              f"{self.train_samples}.")
        for name in ("z", "iter_max", "iter_save", "batch_size", "log_every", "eval_repeats"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"--{name} must be a positive integer, got "
                                  f"{getattr(self, name)}.")
        if self.run < 0 or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--run must be >= 0 and --seed in 0..{MAX_SEED} (seeds are "
                              f"32-bit), got run={self.run}, seed={self.seed}.")
        if not 0 < self.peer_timeout <= MAX_PEER_TIMEOUT:  # NaN fails too
            raise ConfigError(f"--peer_timeout must be a positive number of seconds up to "
                              f"{MAX_PEER_TIMEOUT:.0f} (a week), got {self.peer_timeout}.")
        if self.steps_per_execution is not None:
            if self.steps_per_execution <= 0:
                raise ConfigError(f"--steps_per_execution must be a positive integer, got "
                                  f"{self.steps_per_execution}.")
            for name in ("iter_save", "log_every"):
                if getattr(self, name) is not None and \
                        getattr(self, name) % self.steps_per_execution:
                    raise ConfigError(f"--{name}={getattr(self, name)} must be a multiple of "
                                      f"--steps_per_execution={self.steps_per_execution} (or "
                                      f"leave --steps_per_execution unset to choose it).")
        if not 0 <= self.nll_samples <= MAX_IWAE_SAMPLES:
            raise ConfigError(f"--nll_samples must be in 0..{MAX_IWAE_SAMPLES}, got "
                              f"{self.nll_samples}.")
        self.iwae_samples = iwae_sample_counts(self.iwae_samples)

    # -------------------------------------------------------------- what derives from them
    def default_likelihood(self, dataset):
        """The likelihood of ``--likelihood=auto`` on ``dataset``: the kind's own (the FSVAE's
        Gaussian), else the reference's Bernoulli for grey images and the FSVAE's Gaussian of
        fixed variance for colour ones."""
        if self.kind.likelihood:
            return self.kind.likelihood
        return "bernoulli" if dataset.image_shape[2] == 1 else "gaussian"

    def named(self, dataset):
        """The settings that name the run, in order: the data when it is not the kind's default
        (or the kind always shows it), z when changed, the kind's ``names`` (always shown), the
        networks and likelihood when not the defaults, then the kind's other hyperparameters when
        changed, and the objective."""
        kind = self.kind
        shown = {}
        if "dataset" in kind.names or dataset.name != kind.dataset:
            shown["dataset"] = dataset.name
        if "z" in kind.names or self.z != kind.z:
            shown["z"] = self.z
        shown.update({name: self.hypers[name] for name in kind.names if name in self.hypers})
        if self.arch != "mlp":
            shown["arch"] = self.arch
        if self.likelihood != self.default_likelihood(dataset):
            shown["likelihood"] = self.likelihood
        shown.update({h.short or h.name: self.hypers[h.name] for h in kind.hypers
                      if h.name not in kind.names and h.names_run
                      and self.hypers[h.name] != h.default})
        if self.objective != "elbo":
            shown["objective"] = f"{self.objective}{self.train_samples}"
        return shown

    def run_name(self, dataset):
        """The run's folder name, e.g. ``model=gmvae_z=10_k=500_run=0000`` or
        ``model=ssvae_gw=1_cw=100_run=0000`` (numbers as written: 1, 0.5, 1e-05)."""
        shown = "".join(f"_{name}={number_text(value)}"
                        for name, value in self.named(dataset).items())
        return f"model={self.model}{shown}_run={self.run:04d}"

    def _check_types(self):
        """A script's numbers and switches as the flags' types (``iter_max=1e5`` is 100000;
        2.5 steps, ``"100"`` or None where a number must be are refused, not met later deep in
        a run); None only where it means a default or a duration still in epochs."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                if field.default is not None and field.name not in self._in_epochs and \
                        field.type in (int, float, bool):
                    raise ConfigError(f"--{field.name} must be set (its default: "
                                      f"{field.default!r}), got None.")
            elif field.type is int:
                setattr(self, field.name, registry.check_number(field.name, value, int,
                                                                minimum=None))
            elif field.type is float:  # its range (finite, positive, ...) is checked below
                if isinstance(value, bool) or not isinstance(value, numbers.Real):
                    raise ConfigError(f"--{field.name} must be a number, got {value!r}.")
                setattr(self, field.name, float(value))
            elif field.type is bool:
                if value not in (True, False):
                    raise ConfigError(f"--{field.name} must be True or False, got {value!r}.")
                setattr(self, field.name, bool(value))

    def _check_early_stopping(self):
        self.validation = registry.check_number("validation", self.validation, int)
        if self.patience is not None:
            self.patience = registry.check_number("patience", self.patience, int)
        if self._set("patience") and not self.validation:
            raise ConfigError("--patience stops on the validation split's bound: hold one out "
                              "of the training images with --validation=N (the papers: 10000 "
                              "on MNIST), never the test images.")
        if self._set("patience") and self.strategy == "multiworker":
            raise ConfigError("--patience runs on one machine (--strategy=default or mirrored): "
                              "under multiworker only the chief validates.")

    def recorded(self, data_identity):
        """What ``config.json`` records: every common setting, the kind's hyperparameters and
        the data's identity (:func:`tfp_vae.train.data_identity`)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name != "hypers"}
        fields["iwae_samples"] = list(self.iwae_samples)
        if "steps_per_epoch" in self.__dict__:
            fields["steps_per_epoch"] = self.steps_per_epoch
        return {**fields, **self.hypers, **data_identity}

    def identity(self):
        """The names of the recorded settings a resumed run must share (:data:`IDENTITY` and
        the kind's hyperparameters marked ``identity``)."""
        return IDENTITY + tuple(h.name for h in self.kind.hypers if h.identity)

    def model_kwargs(self, dataset):
        """The model's constructor arguments for ``dataset``."""
        kwargs = {h.name: self.hypers[h.name] for h in self.kind.hypers if h.model_arg}
        kwargs.update(z_dim=self.z, image_shape=dataset.image_shape, likelihood=self.likelihood,
                      arch=self.arch)
        if self.kind.task != "unsupervised":
            kwargs["num_classes"] = dataset.num_classes
        elif self.objective != "elbo":
            kwargs.update(objective=self.objective, train_samples=self.train_samples)
        if self.kl_warmup or self.free_bits:
            kwargs.update(kl_warmup=self.kl_warmup, free_bits=self.free_bits)
        return kwargs


# Settings added after runs had been made with their default behaviour: a config.json without
# them was made with these values (what its resume is checked against).
SINCE_ADDED = {"kl_warmup": 0, "free_bits": 0.0, "lr_schedule": "constant", "validation": 0,
               "patience": 0, "adam_epsilon": 1e-7}


def number_text(value):
    """A setting's value as a user writes it: 1.0 -> '1', 0.001 -> '0.001', 'mnist' -> 'mnist'."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)
