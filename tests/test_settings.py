"""tfp_vae.settings: choices checked once, alike by the settings, the models and the networks;
steps per execution that divide the checkpoint and log intervals."""

import re

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
