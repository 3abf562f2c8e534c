"""tfp_vae.settings: choices checked once, alike by the settings, the models and the networks;
steps per execution that divide every boundary."""

import pytest

from tfp_vae import errors, models, train


@pytest.mark.parametrize("field, value", [("arch", "dense"), ("likelihood", "poisson")])
def test_an_unknown_arch_or_likelihood_is_refused_alike_by_config_model_and_networks(field,
                                                                                    value):
    """One rule (config.check_choice): the config names the flag, the model and the network
    builders the argument, each listing the choices."""
    from tfp_vae import networks, train
    choices = {"arch": "mlp, conv", "likelihood": "bernoulli, gaussian"}[field]
    with pytest.raises(errors.ConfigError, match=f"--{field} must be one of .*got '{value}'"):
        train.Settings(**{field: value}).resolve()
    with pytest.raises(ValueError, match=f"^{field} must be one of {choices}, got '{value}'"):
        models.VAE(**{field: value})
    builder = {"arch": lambda: networks.encoder(value, (28, 28, 1), 2),
               "likelihood": lambda: networks.decoder("mlp", value, (28, 28, 1), 2)}[field]
    with pytest.raises(ValueError, match=f"^{field} must be one of {choices}, got '{value}'"):
        builder()


@pytest.mark.parametrize("settings, start, expected", [
    (dict(iter_save=10000, log_every=1000, iter_max=20000), 0, 50),
    (dict(iter_save=10000, log_every=1000, iter_max=20000), 10150, 50),
    (dict(iter_save=10000, log_every=1000, iter_max=20000), 10130, 10),
    (dict(iter_save=10, log_every=10, iter_max=25), 0, 5),
    (dict(iter_save=7, log_every=7, iter_max=21), 0, 1),
    (dict(iter_save=100, log_every=100, iter_max=1000, strategy="mirrored"), 0, 1),
])
def test_steps_per_execution_divides_every_boundary(settings, start, expected):
    config = train.Settings(**settings).resolve()
    assert train.resolve_steps_per_execution(config, start) == expected


def test_explicit_steps_per_execution_must_fit_the_resumed_step():
    config = train.Settings(iter_save=100, log_every=100, iter_max=1000,
                               steps_per_execution=50).resolve()
    with pytest.raises(train.ConfigError, match="resumes at step 130, which is not a multiple"):
        train.resolve_steps_per_execution(config, 130)
