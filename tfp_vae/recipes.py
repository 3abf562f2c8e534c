"""The papers' training protocols as named recipes: ``bin/train --recipe=NAME``.

A recipe is the settings a paper states, written in the paper's units: its durations (training
length, KL warm-up, early stopping's patience, checkpoint and log intervals) in epochs, passes
over the training images that remain after the validation split, made steps once the data is
known (:meth:`tfp_vae.settings.Settings.to_steps`; with another ``--batch_size`` or
``--validation``, an epoch is still a pass). Settings given beside a recipe override it (a
shorter ``--iter_max`` for the budget one has, other data); its model cannot be changed.
``config.json`` records the recipe's name with the settings it resolved to.

The recipes (on the default data, dynamically binarised MNIST; the test NLL is -IWAE-5000 on
all 10,000 test images, as both papers):

* ``vampprior-paper/vae`` and ``vampprior-paper/vampprior``: Tomczak & Welling (2018), "VAE with
  a VampPrior", section 5 and its code: gated MLPs 300-300 (``--arch=gated``), z = 40, K = 500
  pseudo-inputs, batch 100, Adam 5e-4, KL warm-up over 100 epochs, 10,000 training images held
  out for validation, early stopping after 50 epochs without a better validation bound (counted
  from the end of the warm-up, as the paper's code), at most 2,000 epochs. Test NLL, Table 2
  (MNIST, one stochastic layer): 88.56 and 85.57.
* ``iwae-paper/vae``, ``iwae-paper/iwae-k5``, ``iwae-paper/iwae-k50``: Burda, Grosse &
  Salakhutdinov (2016), "Importance Weighted Autoencoders", section 5, one stochastic layer:
  tanh MLPs 200-200 (``--arch=burda``), z = 50, batch 20, Adam (epsilon 1e-4) at 1e-3 with the
  3^i-epoch schedule (``--lr_schedule=burda``, 3,280 epochs), trained on the ELBO or on IWAE-k;
  no validation split. Test NLL, Table 1 (MNIST, one stochastic layer): 86.76, 85.54, 84.78.
* ``iwae-paper/vae-2layer``, ``iwae-paper/iwae-k5-2layer``, ``iwae-paper/iwae-k50-2layer``: the
  same protocol with the paper's second architecture, two stochastic layers (``--model=
  two_layer_vae``: h1 of 100 and h2 of 50 units, tanh MLPs 200-200 between x and h1 and 100-100
  between h1 and h2). Test NLL, Table 1 (MNIST, two stochastic layers): 85.33, 83.89, 82.90.

No TensorFlow here: ``bin/train`` resolves a recipe before it imports TensorFlow.
"""

import dataclasses

from tfp_vae.errors import ConfigError

# Settings a recipe states in epochs (everything else in its own unit).
DURATIONS = ("iter_max", "kl_warmup", "patience", "iter_save", "log_every")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A paper's protocol.

    Attributes:
      name: the ``--recipe`` value.
      paper: the citation, with the section the settings come from.
      settings: the settings that are not durations (the model, networks, optimiser, split).
      epochs: the durations of :data:`DURATIONS`, in epochs (passes over the training images
        left after the validation split; :meth:`tfp_vae.settings.Settings.to_steps` makes them
        steps once the data is known).
      paper_nll: the paper's test NLL (nats) of this model.
    """
    name: str
    paper: str
    settings: dict
    epochs: dict
    paper_nll: float


_VAMPPRIOR_PAPER = {"nll_samples": 5000, "z": 40, "arch": "gated", "batch_size": 100,
                    "lr": 5e-4, "validation": 10_000}
_VAMPPRIOR_EPOCHS = {"iter_max": 2000, "kl_warmup": 100, "patience": 50, "iter_save": 10,
                     "log_every": 1}
_VAMPPRIOR_CITATION = ("Tomczak & Welling (2018), VAE with a VampPrior, AISTATS; section 5 and "
                       "Table 2 (MNIST)")

_IWAE_PAPER = {"nll_samples": 5000, "z": 50, "arch": "burda", "batch_size": 20, "lr": 1e-3,
               "lr_schedule": "burda", "adam_epsilon": 1e-4}
_IWAE_EPOCHS = {"iter_max": 3280, "iter_save": 10, "log_every": 1}
_IWAE_CITATION = ("Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, "
                  "ICLR; section 5 and Table 1 (MNIST, one stochastic layer)")
_IWAE_2LAYER = {**_IWAE_PAPER, "model": "two_layer_vae", "z": 100, "z2": 50}
_IWAE_2LAYER_CITATION = _IWAE_CITATION.replace("one stochastic layer", "two stochastic layers")

RECIPES = {recipe.name: recipe for recipe in (
    Recipe("vampprior-paper/vae", _VAMPPRIOR_CITATION, {**_VAMPPRIOR_PAPER, "model": "vae"},
           _VAMPPRIOR_EPOCHS, 88.56),
    Recipe("vampprior-paper/vampprior", _VAMPPRIOR_CITATION,
           {**_VAMPPRIOR_PAPER, "model": "vampprior", "pseudo_inputs": 500}, _VAMPPRIOR_EPOCHS,
           85.57),
    Recipe("iwae-paper/vae", _IWAE_CITATION, {**_IWAE_PAPER, "model": "vae"}, _IWAE_EPOCHS,
           86.76),
    Recipe("iwae-paper/iwae-k5", _IWAE_CITATION,
           {**_IWAE_PAPER, "model": "vae", "objective": "iwae", "train_samples": 5},
           _IWAE_EPOCHS, 85.54),
    Recipe("iwae-paper/iwae-k50", _IWAE_CITATION,
           {**_IWAE_PAPER, "model": "vae", "objective": "iwae", "train_samples": 50},
           _IWAE_EPOCHS, 84.78),
    Recipe("iwae-paper/vae-2layer", _IWAE_2LAYER_CITATION, _IWAE_2LAYER, _IWAE_EPOCHS, 85.33),
    Recipe("iwae-paper/iwae-k5-2layer", _IWAE_2LAYER_CITATION,
           {**_IWAE_2LAYER, "objective": "iwae", "train_samples": 5}, _IWAE_EPOCHS, 83.89),
    Recipe("iwae-paper/iwae-k50-2layer", _IWAE_2LAYER_CITATION,
           {**_IWAE_2LAYER, "objective": "iwae", "train_samples": 50}, _IWAE_EPOCHS, 82.90),
)}


def get(name):
    """The recipe ``name``, else a ConfigError listing the recipes."""
    if name not in RECIPES:
        raise ConfigError(f"--recipe must be one of {', '.join(RECIPES)}, got {name!r}.")
    return RECIPES[name]


def apply(name, given):
    """The settings of recipe ``name`` under ``given`` (the settings set explicitly; None counts
    as not given), and the durations still in epochs: ``(values, in_epochs)``. A length given
    (``iter_max`` or ``epochs``) replaces the recipe's. A ConfigError if ``given`` names another
    model than the recipe's."""
    recipe = get(name)
    given = {key: value for key, value in given.items() if value is not None}
    model = given.get("model", recipe.settings["model"])
    if model != recipe.settings["model"]:
        raise ConfigError(f"--recipe={name} trains --model={recipe.settings['model']}; leave "
                          f"--model out (or choose another recipe), got --model={model}.")
    in_epochs = {key: value for key, value in recipe.epochs.items() if key not in given}
    if "epochs" in given:
        in_epochs.pop("iter_max", None)
    return {**recipe.settings, **given, "recipe": name}, in_epochs


def set_by(name, given):
    """The settings recipe ``name`` sets that ``given`` does not (for error messages)."""
    recipe = get(name)
    return [key for key in (*recipe.settings, *recipe.epochs)
            if key != "model" and given.get(key) is None]
