"""The settings of a training run and the choices they take, checked without TensorFlow.

``bin/train`` defines its flags from :class:`Settings` and checks them with
:meth:`Settings.check` before it imports TensorFlow (several seconds), so that a mistyped or
impossible flag is answered at once; :class:`tfp_vae.train.TrainConfig` adds to it what needs
the models (their reference defaults, which data they take). The choices live here, the one
place the networks, models, strategies and evaluation read them from.
"""

import dataclasses
import math

from tfp_vae import sources
from tfp_vae.errors import ConfigError
from tfp_vae.export import MAX_IWAE_SAMPLES  # memory is bounded by chunks, time is not

MODEL_KINDS = ("vae", "gmvae", "ssvae", "fsvae", "vampprior")  # tfp_vae.models.MODELS' names
OBJECTIVES = ("elbo", "iwae")  # the negative ELBO, or the negative IWAE-K (Burda et al., 2016)
ARCHS = ("mlp", "conv")
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
    """The m of the subset's IWAE-m bounds as a tuple of ints, from ints or the strings of a
    comma-separated flag: one or more whole numbers in 1..MAX_IWAE_SAMPLES, else a
    :class:`~tfp_vae.errors.ConfigError` naming ``flag`` (bin/train and bin/evaluate alike)."""
    try:
        counts = tuple(int(m) for m in values)
    except (TypeError, ValueError):
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


@dataclasses.dataclass
class Settings:
    """Everything a training run needs; ``bin/train`` exposes each field as a flag."""
    model: str = "vae"
    dataset: str = None   # mnist, svhn or tfds:NAME; None: what data_dir holds, else the
                          # model's default (mnist; svhn for the fsvae)
    z: int = None         # None: the model's reference default (10; 64 for the SSVAE)
    k: int = 500
    pseudo_inputs: int = 500  # the VampPrior's K
    objective: str = "elbo"   # or "iwae": train on -IWAE-train_samples (vae, gmvae, vampprior)
    train_samples: int = 5
    gw: float = 1.0
    cw: float = 100.0
    iter_max: int = None  # None: the model's reference default (20000; 30000 for the SSVAE)
    iter_save: int = 10000
    run: int = 0
    seed: int = 0
    batch_size: int = None  # None: the model's reference default (97; 100 for the fsvae)
    lr: float = 1e-3
    data_dir: str = None
    svhn_split: str = "extra"
    verify_checksums: bool = True
    memory_budget: str = sources.DEFAULT_BUDGET
    likelihood: str = "auto"  # auto: the model's, else Bernoulli for grey, Gaussian for colour
    arch: str = "mlp"
    labels_per_class: int = 10
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
    check_steps: int = 3000
    export: bool = True
    deterministic: bool = False
    verbose: int = None  # Keras fit verbosity; None: a live bar on a terminal, else a line an epoch

    def check(self):
        """Raises ConfigError for the first impossible setting that can be told without the
        models (the model's defaults, left None, are not checked here); returns self."""
        if self.model not in MODEL_KINDS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of "
                              f"{', '.join(sorted(MODEL_KINDS))}.")
        check_data(self.dataset, self.memory_budget)
        check_choice("--likelihood", self.likelihood, LIKELIHOOD_CHOICES, ConfigError)
        check_choice("--arch", self.arch, ARCHS, ConfigError)
        if self.svhn_split not in sources.svhn.TRAIN_SPLITS:
            raise ConfigError(f"--svhn_split must be one of "
                              f"{', '.join(sources.svhn.TRAIN_SPLITS)}.")
        for name in ("gw", "cw", "lr"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"--{name} must be a finite number, got {getattr(self, name)}.")
        if self.gw < 0 or self.cw < 0:
            raise ConfigError(f"--gw and --cw must be >= 0, got gw={self.gw}, cw={self.cw}.")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown --objective={self.objective!r}; choose one of "
                              f"{', '.join(OBJECTIVES)}.")
        if not 0 < self.train_samples <= MAX_TRAIN_SAMPLES:
            raise ConfigError(f"--train_samples must be in 1..{MAX_TRAIN_SAMPLES}, got "
                              f"{self.train_samples}.")
        for name in ("z", "k", "pseudo_inputs", "iter_max", "iter_save", "batch_size",
                     "log_every", "eval_repeats", "check_steps", "labels_per_class"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"--{name} must be a positive integer, got "
                                  f"{getattr(self, name)}.")
        if self.run < 0 or self.seed < 0:
            raise ConfigError("--run and --seed must be non-negative.")
        if self.seed > MAX_SEED:
            raise ConfigError(f"--seed must be at most {MAX_SEED} (seeds are 32-bit), got "
                              f"{self.seed}.")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}.")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown --strategy={self.strategy!r}; choose one of "
                              f"{', '.join(STRATEGIES)}.")
        if not 0 < self.peer_timeout <= MAX_PEER_TIMEOUT:  # NaN fails too
            raise ConfigError(f"--peer_timeout must be a positive number of seconds up to "
                              f"{MAX_PEER_TIMEOUT:.0f} (a week), got {self.peer_timeout}.")
        if self.jit_compile not in JIT_CHOICES:
            raise ConfigError(f"--jit_compile must be one of {', '.join(JIT_CHOICES)}.")
        if self.steps_per_execution is not None:
            if self.steps_per_execution <= 0:
                raise ConfigError(f"--steps_per_execution must be a positive integer, got "
                                  f"{self.steps_per_execution}.")
            for name in ("iter_save", "log_every", "iter_max"):
                if getattr(self, name) is not None and getattr(self, name) % \
                        self.steps_per_execution:
                    raise ConfigError(f"--{name}={getattr(self, name)} must be a multiple of "
                                      f"--steps_per_execution={self.steps_per_execution} (or "
                                      f"leave --steps_per_execution unset to choose it).")
        if not 0 <= self.nll_samples <= MAX_IWAE_SAMPLES:
            raise ConfigError(f"--nll_samples must be in 0..{MAX_IWAE_SAMPLES}, got "
                              f"{self.nll_samples}.")
        self.iwae_samples = iwae_sample_counts(self.iwae_samples)
        return self
