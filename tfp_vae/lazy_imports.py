"""Defers modules that Keras imports at start-up and the tools rarely or never use.

Importing Keras 3.15 (which ``import tensorflow`` does, for ``tf.keras``) executes
``import matplotlib.pyplot`` (``keras.src.visualization``) and ``import IPython``
(``keras.src.saving.file_editor``) whenever they are installed: together about 0.9 s of every
tool's start-up on a 2-core machine (``python -X importtime -c "import tensorflow"``), for a
figure module only ``bin/evaluate``'s pictures use and a shell nobody runs. :func:`defer` puts
such a module in ``sys.modules`` unexecuted: an import binds it at once, and its code runs on the
first use of one of its attributes, as it would have at import. Only the tools call it (through
:func:`tfp_vae.quiet.import_tensorflow`), before TensorFlow is imported; a program that imports
``tfp_vae`` as a library is left as it is.

Written by hand because the standard library's :class:`importlib.util.LazyLoader` loads on any
attribute, ``__spec__`` included, and Python's import statement reads ``__spec__`` of a module
already in ``sys.modules`` (``importlib._bootstrap._find_and_load``): its modules run at the
first ``import`` that names them, which is exactly the import to avoid.
"""

import importlib.util
import sys
import threading
import types

# What the import system reads from a module without using it: answered without loading.
_IMPORT_ATTRIBUTES = frozenset(("__spec__", "__name__", "__loader__", "__package__"))
_LOCK = threading.RLock()


class _Deferred(types.ModuleType):
    """A module whose code has not run: the first attribute the import system does not read for
    itself runs it, in place (the same object, now a plain module), and answers from it."""

    def __getattribute__(self, attribute):
        if attribute in _IMPORT_ATTRIBUTES:
            return super().__getattribute__(attribute)
        with _LOCK:
            if type(self) is _Deferred:  # still unloaded (another thread may have loaded it)
                self.__class__ = types.ModuleType
                try:
                    self.__spec__.loader.exec_module(self)
                except BaseException:
                    sys.modules.pop(self.__name__, None)  # as a failed import leaves it
                    raise
        return getattr(self, attribute)

# The modules the tools defer (see the module docstring for who imports them).
DEFERRED = ("IPython", "matplotlib.pyplot", "matplotlib.patches", "scipy.linalg", "scipy.ndimage")


def defer(name):
    """Makes ``import name`` bind a module whose code runs on first attribute access; returns
    whether it did (False when ``name`` is imported already or not installed). A submodule's
    parent package is imported now, for real (``find_spec`` needs it; a package's ``__init__``
    must run before its modules), and the submodule is set as its attribute, as an import
    would."""
    if name in sys.modules:
        return False
    parent, _, child = name.rpartition(".")
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None or spec.loader is None:
        return False
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _Deferred
    sys.modules[name] = module
    if parent:
        setattr(sys.modules[parent], child, module)
    return True


def defer_all():
    """:func:`defer` on each of :data:`DEFERRED`; returns the names deferred."""
    return [name for name in DEFERRED if defer(name)]
