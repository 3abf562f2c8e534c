"""The tools' import of TensorFlow, without what Keras and TFP import for nothing.

Importing Keras 3.15 (which ``import tensorflow`` does, for ``tf.keras``) executes
``import matplotlib.pyplot`` (``keras.src.visualization``), ``from matplotlib import patches``
and ``import IPython`` (``keras.src.saving.file_editor``) whenever they are installed, and TFP
0.25 imports tf-keras, whose image preprocessing imports ``scipy.linalg`` and ``scipy.ndimage``:
together 1 to 1.5 s of every tool's start-up on a 2-core machine (``python -X importtime``), for
figures only the pictures of a run draw, a shell nobody runs and functions nobody calls. TFP
itself, imported after TensorFlow, loads its ``experimental`` and ``layers`` packages at once
(they register with TensorFlow and tf-keras; 0.3 s), and keeps them lazy when imported before;
the tools use neither. :func:`import_tensorflow` imports TensorFlow as the tools want it:

* the modules of :data:`DEFERRED` (and their packages) are put in ``sys.modules`` unexecuted
  (:func:`defer`): an import binds them at once, and their code runs on the first use of one of
  their attributes, after their packages', as it would have at import;
* IPython is hidden while TensorFlow is imported (its import fails, :class:`_Hide`): Keras,
  which guards that import, goes without it, and matplotlib (which uses IPython when it finds it
  imported) does too;
* TFP's package is imported first (by the tools that use it);
* Keras is hidden too for a tool that uses neither it nor TFP (``bin/sample``): TensorFlow
  guards its eager import of ``keras.src.optimizers`` and goes on without it.

Only the tools call it (through :func:`tfp_vae.quiet.import_tensorflow`); a program that imports
``tfp_vae`` as a library is left as it is.

Written by hand because the standard library's :class:`importlib.util.LazyLoader` loads on any
attribute, ``__spec__`` included, and Python's import statement reads ``__spec__`` of a module
already in ``sys.modules`` (``importlib._bootstrap._find_and_load``): its modules run at the
first ``import`` that names them, which is exactly the import to avoid. A deferred package's
``__init__`` runs before any of its modules, deferred (:func:`_load`) or imported for real (a
finder first in ``sys.meta_path``, :class:`_ParentsFirst`, runs it as such an import begins).
"""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types

# The modules the tools defer (and so their packages, matplotlib and scipy).
DEFERRED = ("matplotlib.pyplot", "matplotlib.patches", "scipy.linalg", "scipy.ndimage")
# Hidden while TensorFlow is imported (their importers go without them).
HIDDEN = ("IPython",)

# What the import system reads from a module without using it: answered without loading.
_IMPORT_ATTRIBUTES = frozenset(("__spec__", "__name__", "__loader__", "__package__", "__path__"))
# One lock for every deferred module's execution: another thread that asks for a module being
# executed waits for it, as for a module being imported. (The tools import on one thread.)
_LOCK = threading.RLock()
_state = threading.local()  # .deferring: defer() is finding a spec (no package may run)


class _Deferred(types.ModuleType):
    """A module whose code has not run: the first attribute that neither the import system
    reads for itself nor is a deferred submodule runs it (:func:`_load`), in place (the same
    object, then a plain module), and answers from it."""

    def __getattribute__(self, attribute):
        if attribute in _IMPORT_ATTRIBUTES:
            return super().__getattribute__(attribute)
        value = super().__getattribute__("__dict__").get(attribute)
        if type(value) is _Deferred:  # ``import package.module as m`` reads it from the package
            return value
        _load(self)
        # A plain lookup: while the module's own code runs, what it has defined so far.
        return types.ModuleType.__getattribute__(self, attribute)


def _load(module):
    """Runs a deferred module's code once, after its deferred packages'. A module that fails is
    taken out of ``sys.modules`` and of its package, as a failed import leaves it, with its own
    deferred submodules."""
    with _LOCK:
        spec = types.ModuleType.__getattribute__(module, "__spec__")
        if type(module) is not _Deferred or getattr(spec, "_initializing", False):
            return  # loaded, or being loaded by this thread (its code asked for itself)
        parent = spec.name.rpartition(".")[0]
        if parent and type(sys.modules.get(parent)) is _Deferred:
            _load(sys.modules[parent])
        spec._initializing = True
        try:
            spec.loader.exec_module(module)
        except BaseException:
            _forget(spec.name, module)
            raise
        finally:
            spec._initializing = False
            module.__class__ = types.ModuleType


def _forget(name, module):
    """Takes a module that failed to run out of ``sys.modules`` and of its package, with the
    deferred modules below it."""
    if sys.modules.get(name) is module:
        del sys.modules[name]
    parent, _, child = name.rpartition(".")
    package = sys.modules.get(parent)
    if package is not None and package.__dict__.get(child) is module:
        delattr(package, child)
    for below in [n for n, m in sys.modules.items()
                  if n.startswith(name + ".") and type(m) is _Deferred]:
        del sys.modules[below]


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


class _Refused(importlib.abc.Loader):
    """The loader of a hidden module: its import fails as a missing module's would."""

    def create_module(self, spec):
        raise ImportError(f"{spec.name} is hidden while TensorFlow is imported", name=spec.name)

    def exec_module(self, module):  # never reached: create_module refuses
        raise ImportError(f"{module.__name__} is hidden while TensorFlow is imported")


class _Hide(importlib.abc.MetaPathFinder):
    """First in ``sys.meta_path`` while TensorFlow is imported: an import of one of ``names``
    fails with ImportError, while ``importlib.util.find_spec`` still finds where the module lies
    (TensorFlow builds ``tf.keras``'s package path from it; ``sys.modules[name] = None`` would
    make that path ``None`` and ``import tensorflow.keras`` fail for good)."""

    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            return None  # not installed: the usual ModuleNotFoundError
        return importlib.util.spec_from_loader(
            name, _Refused(), origin=spec.origin,
            is_package=spec.submodule_search_locations is not None)


def import_tensorflow(tfp=True, keras=True):
    """Imports TensorFlow as the module docstring says; returns it. ``tfp``: whether TFP will
    be used (its package is then imported first, and imports TensorFlow and Keras); ``keras``:
    whether Keras will be: if not (only with ``tfp=False``), it is hidden too (TensorFlow guards
    its eager import of Keras' optimisers), and ``tf.keras``, ``import tensorflow.keras`` or
    ``import keras`` import it later as usual. ``bin/sample``, which only runs a SavedModel,
    imports neither."""
    if tfp and not keras:
        raise ValueError("keras=False needs tfp=False: TFP, imported first, imports TensorFlow "
                         "and Keras with it before anything can be hidden.")
    for name in DEFERRED:
        defer(name)
    if tfp and "tensorflow" not in sys.modules:
        import tensorflow_probability  # noqa: F401  (before TensorFlow: see the docstring)
    hide = _Hide(name for name in HIDDEN + (() if keras else ("keras",))
                 if name not in sys.modules)
    sys.meta_path.insert(0, hide)
    try:
        import tensorflow as tf
    finally:
        sys.meta_path.remove(hide)
    return tf
