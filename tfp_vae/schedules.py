"""Learning-rate schedules of a run, functions of the optimiser's step (so a resumed run takes
the rate the uninterrupted one took).

* ``constant``: ``--lr`` throughout (the reference's).
* ``step:EVERY:FACTOR``: ``--lr`` times ``FACTOR`` every ``EVERY`` steps (step decay).
* ``burda``: Burda, Grosse & Salakhutdinov (2016), section 5: ``3^i`` epochs at ``--lr`` times
  ``10^(-i/7)`` for i = 0, ..., 7 (3,280 epochs in all; the last rate after them).

The names are checked without TensorFlow (:func:`check`); :func:`learning_rate` builds Keras'
schedule objects (``keras.optimizers.schedules``) from them. A checkpoint holds the step, not
the schedule: a resumed run rebuilds it from its settings (part of its resume identity).
"""

from tfp_vae.errors import ConfigError

BURDA_STAGES = 8  # i = 0..7


def check(spec):
    """``spec`` parsed: ``("constant",)``, ``("step", every, factor)`` or ``("burda",)``;
    ConfigError naming the forms otherwise."""
    parts = str(spec).split(":")
    try:
        if parts == ["constant"] or parts == ["burda"]:
            return (parts[0],)
        if parts[0] == "step" and len(parts) == 3:
            every, factor = int(parts[1]), float(parts[2])
            if every >= 1 and 0 < factor <= 1:
                return ("step", every, factor)
    except ValueError:
        pass
    raise ConfigError(f"--lr_schedule must be 'constant', 'burda' or 'step:EVERY:FACTOR' (EVERY "
                      f"a whole number of steps >= 1, FACTOR in (0, 1]), got {spec!r}.")


def canonical(spec):
    """``spec`` written one way (``step:1000:.5`` and ``step:1000:0.5`` alike), so that the
    resume identity compares schedules, not spellings."""
    kind = check(spec)
    return kind[0] if len(kind) == 1 else f"step:{kind[1]}:{kind[2]!r}"


def burda_boundaries(steps_per_epoch):
    """The steps at which Burda et al.'s rate changes: after 1, 1 + 3, 1 + 3 + 9, ... epochs."""
    ends, total = [], 0
    for i in range(BURDA_STAGES - 1):
        total += 3 ** i
        ends.append(round(total * steps_per_epoch))
    return ends


def learning_rate(spec, lr, steps_per_epoch):
    """The optimiser's learning rate: ``lr`` itself for ``constant``, else a Keras schedule.

    Args:
      steps_per_epoch: training steps per pass over the training set (the ``burda`` stages
        count in epochs).
    """
    import keras
    kind = check(spec)
    if kind[0] == "constant":
        return lr
    if kind[0] == "step":
        return keras.optimizers.schedules.ExponentialDecay(lr, kind[1], kind[2], staircase=True)
    rates = [lr * 10 ** (-i / 7) for i in range(BURDA_STAGES)]
    # Keras keeps a value up to and including its boundary; the step counted from 0 that starts
    # a stage is its first step, so each boundary is the stage's last step.
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [end - 1 for end in burda_boundaries(steps_per_epoch)], rates)
