"""tfp_vae.schedules: the learning rate of every step, by the papers' rules."""

import numpy as np
import pytest

from tfp_vae import errors, schedules


def test_constant_is_the_rate_itself():
    assert schedules.learning_rate("constant", 1e-3, 600) == 1e-3


def test_step_decay_multiplies_every_so_many_steps():
    rate = schedules.learning_rate("step:100:0.5", 1e-3, 600)
    np.testing.assert_allclose([float(rate(s)) for s in (0, 99, 100, 250)],
                               [1e-3, 1e-3, 5e-4, 2.5e-4], rtol=1e-6)


def test_burda_schedule_is_three_to_the_i_epochs_at_ten_to_the_minus_i_over_seven():
    """Burda, Grosse & Salakhutdinov (2016), section 5: 3^i passes at 0.001 * 10^(-i/7), i =
    0..7, 3,280 passes in all."""
    per_epoch = 10
    rate = schedules.learning_rate("burda", 1e-3, per_epoch)
    ends = np.cumsum([3 ** i for i in range(8)]) * per_epoch  # 10, 40, 130, ..., 32800
    assert ends[-1] == 3280 * per_epoch
    for i, end in enumerate(ends):
        np.testing.assert_allclose(float(rate(end - 1)), 1e-3 * 10 ** (-i / 7), rtol=1e-6)
    np.testing.assert_allclose(float(rate(0)), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(float(rate(10)), 1e-3 * 10 ** (-1 / 7), rtol=1e-6)


@pytest.mark.parametrize("spec", ["linear", "step:0:0.5", "step:10:2", "step:10", "step:a:b", ""])
def test_a_bad_schedule_names_the_forms(spec):
    with pytest.raises(errors.ConfigError, match="--lr_schedule must be 'constant', 'burda' or"):
        schedules.check(spec)


def test_a_run_optimiser_follows_its_schedule_in_epochs_of_its_data(mnist):
    """bin/train's Adam takes the schedule, its epochs 619 steps of 97 over MNIST's 60,000."""
    from tfp_vae import train
    for spec, step, expected in (("step:2:0.5", 4, 2.5e-4), ("burda", 618, 1e-3),
                                 ("burda", 619, 1e-3 * 10 ** (-1 / 7)), ("constant", 5000, 1e-3)):
        optimizer = train.make_optimizer(train.Settings(lr_schedule=spec).resolve(), mnist)
        optimizer.iterations.assign(step)
        np.testing.assert_allclose(float(optimizer.learning_rate), expected, rtol=1e-6)


def test_a_run_optimiser_takes_its_adam_epsilon(mnist):
    from tfp_vae import train
    for epsilon in (1e-7, 1e-4):
        settings = train.Settings(adam_epsilon=epsilon).resolve()
        assert train.make_optimizer(settings, mnist).epsilon == epsilon


def test_one_schedule_is_written_one_way_for_the_resume_identity():
    assert schedules.canonical("step:1000:.5") == schedules.canonical("step:1000:0.5") == \
        "step:1000:0.5"
    from tfp_vae import train
    assert train.Settings(lr_schedule="step:1000:.50").resolve().lr_schedule == "step:1000:0.5"
