"""The pretrained models (``savedmodels/``), wherever tfp_vae is installed.

A clone (and an editable install) has them in ``savedmodels/`` beside the package; a plain
``pip install .`` copies them to ``<prefix>/share/tfp_vae/savedmodels`` (``data_files`` in
``setup.py``). :func:`path` finds either; the tools take ``--model_dir=pretrained:vae``, and
``pretrained:vampprior-paper/vampprior`` for a recipe's model (``savedmodels/<recipe>/``, with
its ``MODEL_CARD.md``).
Imports nothing heavy.
"""

import os
import site
import sys

from tfp_vae import recipes, registry
from tfp_vae.errors import NotAModelError

PREFIX = "pretrained:"


def folders():
    """Where pretrained models may be, in the order searched: the clone's ``savedmodels/``,
    then the installed copies (the environment's prefix, the user's base)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [os.path.join(here, "savedmodels")] + [
        os.path.join(base, "share", "tfp_vae", "savedmodels")
        for base in (sys.prefix, site.getuserbase())]


def _present(names):
    return [name for name in names if any(
        os.path.isfile(os.path.join(folder, name, "saved_model.pb")) for folder in folders())]


def kinds():
    """The registry's kinds that have a pretrained model here."""
    return _present(registry.KINDS)


def names():
    """Every pretrained model here: the kinds', then the recipes' (:mod:`tfp_vae.recipes`)."""
    return kinds() + _present(recipes.RECIPES)


def path(kind):
    """The folder of the pretrained ``kind`` (one of :func:`names`)."""
    if kind not in names():
        raise NotAModelError(f"there is no pretrained {kind!r}; choose one of "
                             f"{', '.join(names())}.")
    for folder in folders():
        candidate = os.path.join(folder, kind)
        if os.path.isfile(os.path.join(candidate, "saved_model.pb")):
            return candidate
    raise NotAModelError(f"the pretrained {kind} is not installed (looked in "
                         f"{', '.join(folders())}); install tfp_vae from its repository "
                         f"(pip install .), which copies savedmodels/.")


def resolve(model_dir):
    """``model_dir`` itself (``~`` expanded), or the folder of ``pretrained:KIND``."""
    if model_dir.startswith(PREFIX):
        return path(model_dir[len(PREFIX):])
    return os.path.expanduser(model_dir)
