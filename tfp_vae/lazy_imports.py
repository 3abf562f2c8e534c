"""Defers modules that Keras and TFP import at start-up and the tools rarely or never use.

Importing Keras 3.15 (which ``import tensorflow`` does, for ``tf.keras``) executes
``import matplotlib.pyplot`` (``keras.src.visualization``), ``from matplotlib import patches``
and ``import IPython`` (``keras.src.saving.file_editor``) whenever they are installed, and TFP
0.25 imports tf-keras, whose image preprocessing imports ``scipy.linalg`` and ``scipy.ndimage``:
together 1 to 1.5 s of every tool's start-up on a 2-core machine (``python -X importtime``), for
figures only ``bin/evaluate``'s pictures draw, a shell nobody runs and functions nobody calls.
TFP itself, imported after TensorFlow, loads its ``experimental`` and ``layers`` packages at once
(they register with TensorFlow and tf-keras; 0.3 s), and keeps them lazy when imported before;
the tools use neither.
:func:`defer` puts such a module in ``sys.modules`` unexecuted: an import binds it at once, and
its code runs on the first use of one of its attributes, as it would have at import. Only the
tools call it (through :func:`tfp_vae.quiet.import_tensorflow`), before TensorFlow is imported;
a program that imports ``tfp_vae`` as a library is left as it is.

Written by hand because the standard library's :class:`importlib.util.LazyLoader` loads on any
attribute, ``__spec__`` included, and Python's import statement reads ``__spec__`` of a module
already in ``sys.modules`` (``importlib._bootstrap._find_and_load``): its modules run at the
first ``import`` that names them, which is exactly the import to avoid. A deferred package's
``__init__`` still runs before any of its modules that is imported for real: a finder first in
``sys.meta_path`` (:class:`_ParentsFirst`) runs it as such an import begins.
"""

import importlib.util
import sys
import threading
import types

# The modules the tools defer (and so their packages, matplotlib and scipy).
DEFERRED = ("IPython", "matplotlib.pyplot", "matplotlib.patches", "scipy.linalg",
            "scipy.ndimage")

# What the import system reads from a module without using it: answered without loading.
_IMPORT_ATTRIBUTES = frozenset(("__spec__", "__name__", "__loader__", "__package__", "__path__"))
_LOCK = threading.RLock()
_state = threading.local()  # .deferring: defer() is finding a spec (no parent may load)


class _Deferred(types.ModuleType):
    """A module whose code has not run: the first attribute that neither the import system
    reads for itself nor is a deferred submodule runs it, in place (the same object, now a plain
    module), and answers from it."""

    def __getattribute__(self, attribute):
        if attribute in _IMPORT_ATTRIBUTES:
            return super().__getattribute__(attribute)
        value = super().__getattribute__("__dict__").get(attribute)
        if type(value) is _Deferred:  # ``import package.module as m`` reads it from the package
            return value
        _load(self)
        return getattr(self, attribute)


def _load(module):
    """Runs a deferred module's code (once, whichever thread asks first)."""
    with _LOCK:
        if type(module) is not _Deferred:
            return
        module.__class__ = types.ModuleType
        try:
            module.__spec__.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module.__name__, None)  # as a failed import leaves it
            raise


class _ParentsFirst:
    """A meta-path finder that finds nothing: before a module is imported for real, it runs
    the deferred packages above it, as the import system runs a package before its modules."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if not getattr(_state, "deferring", False):
            parts = fullname.split(".")
            for i in range(1, len(parts)):
                package = sys.modules.get(".".join(parts[:i]))
                if type(package) is _Deferred:
                    _load(package)
        return None


def defer(name):
    """Makes ``import name`` bind a module whose code runs on first attribute access; returns
    whether it did (False when ``name`` is imported already or not installed). Its packages are
    deferred too unless imported already, and the module is set as its package's attribute, as
    an import would."""
    if name in sys.modules:
        return False
    parent, _, child = name.rpartition(".")
    if parent and parent not in sys.modules and not defer(parent):
        return False
    if not any(type(finder) is _ParentsFirst for finder in sys.meta_path):
        sys.meta_path.insert(0, _ParentsFirst())
    _state.deferring = True
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    finally:
        _state.deferring = False
    if spec is None or spec.loader is None:
        return False
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _Deferred
    sys.modules[name] = module
    if parent:
        setattr(sys.modules[parent], child, module)
    return True


def defer_all():
    """:func:`defer` on each of :data:`DEFERRED`, then imports TFP's (lazy) package if
    TensorFlow is not imported yet; returns the names deferred."""
    deferred = [name for name in DEFERRED if defer(name)]
    if "tensorflow" not in sys.modules:
        import tensorflow_probability  # noqa: F401  (before TensorFlow: see the docstring)
    return deferred
