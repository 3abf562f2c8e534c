"""tfp_vae.memory: what a model needs, known without building it."""

import pytest


@pytest.mark.parametrize("kind, kwargs", [
    ("vae", {"z_dim": 37}), ("gmvae", {"z_dim": 7, "k": 13}), ("ssvae", {"z_dim": 5}),
    ("fsvae", {"z_dim": 9, "image_shape": (32, 32, 3)}),
    ("vae", {"z_dim": 6, "arch": "conv", "image_shape": (20, 12, 3)}),
    ("two_layer_vae", {"z_dim": 11, "z2": 7}), ("vampprior", {"z_dim": 3, "pseudo_inputs": 5}),
])
def test_parameter_counts_are_known_without_building_the_model(kind, kwargs):
    """The count behind bin/train's memory check (2^n tiny builds for n sizes) is the built
    model's."""
    from tfp_vae import memory, registry
    spec = registry.get(kind)
    cls = spec.model_class()
    assert memory.parameter_count(cls, spec.sizes(), **kwargs) == cls(**kwargs).count_params()
