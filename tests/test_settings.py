"""tfp_vae.settings: choices checked once, alike by the settings, the models and the networks;
steps per execution that divide the checkpoint and log intervals."""

import copy
import re

import numpy as np
import pytest

from tfp_vae import errors, models, train


@pytest.mark.parametrize("field, value", [("arch", "dense"), ("likelihood", "poisson")])
def test_an_unknown_arch_or_likelihood_is_refused_alike_by_config_model_and_networks(field,
                                                                                    value):
    """One rule (config.check_choice): the config names the flag, the model and the network
    builders the argument, each listing the choices."""
    from tfp_vae import networks, train
    choices = {"arch": "mlp, gated, burda, conv", "likelihood": "bernoulli, gaussian"}[field]
    with pytest.raises(errors.ConfigError, match=f"--{field} must be one of .*got '{value}'"):
        train.Settings(**{field: value}).resolve()
    with pytest.raises(ValueError, match=f"^{field} must be one of {choices}, got '{value}'"):
        models.VAE(**{field: value})
    builder = {"arch": lambda: networks.encoder(value, (28, 28, 1), 2),
               "likelihood": lambda: networks.decoder("mlp", value, (28, 28, 1), 2)}[field]
    with pytest.raises(ValueError, match=f"^{field} must be one of {choices}, got '{value}'"):
        builder()


@pytest.mark.parametrize("settings, expected", [
    (dict(iter_save=10000, log_every=1000, iter_max=20000), 50),
    (dict(iter_save=10000, log_every=1000, iter_max=3095), 50),  # iter_max need not divide
    (dict(iter_save=10, log_every=10, iter_max=25), 10),
    (dict(iter_save=10, log_every=15, iter_max=25), 5),
    (dict(iter_save=7, log_every=7, iter_max=21), 1),
    (dict(iter_save=100, log_every=100, iter_max=1000, strategy="mirrored"), 1),
])
def test_steps_per_execution_divide_the_checkpoint_and_log_intervals(settings, expected):
    assert train.resolve_steps_per_execution(train.Settings(**settings).resolve()) == expected


def test_training_options_belong_to_the_resume_identity_and_kl_ones_refuse_the_iwae():
    resolved = train.Settings(kl_warmup=100, free_bits=0.5, lr_schedule="burda").resolve()
    assert {"kl_warmup", "free_bits", "lr_schedule"} <= set(resolved.identity())
    with pytest.raises(errors.ConfigError, match="--objective=iwae has none"):
        train.Settings(objective="iwae", kl_warmup=10).resolve()
    with pytest.raises(errors.ConfigError, match="--free_bits must be a finite number >= 0"):
        train.Settings(free_bits=-1.0).resolve()


@pytest.mark.parametrize("changes, message", [
    (dict(patience=100), "hold one out of the training images with --validation=N"),
    (dict(patience=100, validation=10, strategy="multiworker"), "--patience runs on one machine"),
    (dict(validation=-1), "--validation must be a whole number >= 0"),
])
def test_early_stopping_needs_a_validation_split_and_one_machine(changes, message):
    with pytest.raises(errors.ConfigError, match=re.escape(message)):
        train.Settings(**changes).resolve()
    assert {"validation", "patience"} <= set(train.Settings().resolve().identity())


@pytest.mark.parametrize("arch, iter_max, xla", [("mlp", 2000, True), ("gated", 2000, True),
                                                 ("burda", 5000, True), ("conv", 5000, False),
                                                 ("gated", 1999, False)])
def test_xla_is_chosen_for_long_runs_of_dense_networks(arch, iter_max, xla):
    import tensorflow as tf
    settings = train.Settings(model="vae", arch=arch, iter_max=iter_max).resolve()
    assert train.resolve_jit(settings, tf.distribute.get_strategy()) is xla


@pytest.mark.parametrize("given, expected", [
    (dict(iter_max=1e5, z=16.0), dict(iter_max=100000, z=16)),  # whole floats are ints
    (dict(lr=1, peer_timeout=60), dict(lr=1.0, peer_timeout=60.0)),
    (dict(iter_max=np.int64(5000), lr=np.float32(0.5)), dict(iter_max=5000, lr=0.5)),
    (dict(iwae_samples=1000), dict(iwae_samples=(1000,))),  # one number, as a script writes it
    (dict(iwae_samples="1,1000"), dict(iwae_samples=(1, 1000))),
    (dict(iwae_samples=np.array([1, 1000])), dict(iwae_samples=(1, 1000))),
    (dict(full_test=0, export=1), dict(full_test=False, export=True)),
])
def test_a_scripts_numbers_take_the_flags_types(given, expected):
    """Settings from a script get the types bin/train's flags give (recorded in config.json and
    compared on resume as such)."""
    settings = train.Settings(**given).resolve()
    for name, value in expected.items():
        assert getattr(settings, name) == value
        assert type(getattr(settings, name)) is type(value)


@pytest.mark.parametrize("given, message", [
    (dict(iter_max=2.5), "--iter_max must be a whole number, got 2.5"),
    (dict(iter_max="100"), "--iter_max must be a whole number, got '100'"),
    (dict(batch_size=True), "--batch_size must be a whole number, got True"),
    (dict(nll_samples=2.5), "--nll_samples must be a whole number"),
    (dict(lr="0.001"), "--lr must be a number, got '0.001'"),
    (dict(eval_repeats=None), r"--eval_repeats must be set \(its default: 100\), got None"),
    (dict(full_test="no"), "--full_test must be True or False, got 'no'"),
    (dict(iwae_samples=2.5), "--iwae_samples must be whole numbers, got 2.5"),
    (dict(iwae_samples=True), "--iwae_samples must be whole numbers"),
])
def test_a_scripts_wrong_types_are_refused_with_the_flags_name(given, message):
    """Before: 2.5 steps or z = 10.0 passed the checks and failed (or ran) deep inside the run,
    "100" raised a TypeError, and iwae_samples=1000 a TypeError from the error message itself."""
    with pytest.raises(errors.ConfigError, match=message):
        train.Settings(**given).resolve()


def test_a_resolved_settings_whose_model_changes_resolves_as_a_fresh_one():
    """Before: the first kind's defaults (z, iter_max) and hyperparameters (k) stuck to it."""
    settings = train.Settings(model="gmvae").resolve()
    settings.model = "ssvae"
    fresh = train.Settings(model="ssvae").resolve()
    settings.resolve()
    for name in ("z", "iter_max", "batch_size", "hypers"):
        assert getattr(settings, name) == getattr(fresh, name)
    given = train.Settings(model="gmvae", k=100).resolve()
    given.model = "vae"
    with pytest.raises(errors.ConfigError, match="--k is a setting of the gmvae"):
        given.resolve()  # what the user gave stays theirs


def test_a_setting_given_after_resolving_stays_the_users_even_at_the_old_default():
    """Before: kept or forgotten by its value, so z = 10 given to a resolved VAE (its default)
    became the SSVAE's 64; and re-resolving a copy emptied the original's hyperparameters."""
    settings = train.Settings(model="vae").resolve()
    settings.z = 10
    settings.model = "ssvae"
    assert settings.resolve().z == 10
    original = train.Settings(model="gmvae").resolve()
    changed = copy.copy(original)
    changed.model = "vae"
    changed.resolve()
    assert original.hypers == {"k": 500} and changed.hypers == {}


def test_a_hyperparameter_set_as_an_attribute_is_a_hyperparameter():
    settings = train.Settings(model="gmvae").resolve()
    settings.k = 7
    assert settings.k == 7 and settings.hypers == {"k": 7}
    assert settings.resolve().hypers == {"k": 7}


def test_a_failed_resolve_leaves_no_defaults_behind():
    settings = train.Settings(model="vae").resolve()
    settings.model, settings.k = "ssvae", 5
    with pytest.raises(errors.ConfigError, match="--k is a setting of the gmvae"):
        settings.resolve()
    settings.model = "gmvae"
    fresh = train.Settings(model="gmvae", k=5).resolve()
    assert (settings.resolve().z, settings.iter_max) == (fresh.z, fresh.iter_max)


def test_epochs_given_after_resolving_replace_the_default_length():
    settings = train.Settings().resolve()
    settings.epochs = 3
    assert settings.resolve().iter_max is None  # in epochs until to_steps


def test_an_unknown_setting_assigned_is_refused_as_when_given():
    with pytest.raises(errors.ConfigError, match="unknown setting 'kk'"):
        train.Settings().kk = 100
