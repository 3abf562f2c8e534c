"""Datasets of image files, one subfolder per class (the layout of
``keras.utils.image_dataset_from_directory``)::

    FOLDER/train/<class>/*.png     FOLDER/test/<class>/*.png     (a given test split), or
    FOLDER/<class>/*.png                                         (a held-out test split), or
    FOLDER/*.png                                                 (unlabelled, held-out test split)

Classes are numbered in the sorted order of their folder names, as Keras does. Files ending in
.png, .jpg, .jpeg, .bmp or .gif are images (decoded with Pillow); other files and hidden
entries are ignored. Every image must have the same size and be grey or colour alike (16-bit
grey is scaled to 8 bits, palette images such as GIFs are grey when their colours are, alpha is
dropped); 32-bit, float and oversized images are refused naming the file.

**Held-out test split** (when there is no ``test/`` folder): within each class, the files are
sorted by name and shuffled with ``numpy.random.default_rng([0, class number])``; the first
``n // 10`` of each class (a tenth, rounded down) are the test split, the rest the training split.
The rule depends on nothing but the file names, so every run on the same folder gets the same
split.
"""

import hashlib
import io
import pathlib

import numpy as np

from tfp_vae.sources.common import DataError, ImageSet, MemoryBudget, combine_digests, safe_name

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
HOLD_OUT = 10  # one image in HOLD_OUT of each class is held out for testing


def _visible(path):
    return not path.name.startswith(".")


def _images_in(folder):
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and _visible(p) and p.suffix.lower() in EXTENSIONS)


def _class_folders(folder):
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p) and _images_in(p))


def looks_like(folder):
    """Whether ``folder`` has one of the layouts above."""
    folder = pathlib.Path(folder)
    return bool(_images_in(folder) or _class_folders(folder)
                or (folder / "train").is_dir() and _class_folders(folder / "train"))


def load(folder, budget=None):
    """The :class:`~tfp_vae.sources.common.ImageSet` of an image folder (see the module
    docstring): images (N, height, width, 1 or 3) uint8."""
    folder = pathlib.Path(folder)
    budget = MemoryBudget.of(budget)
    if (folder / "train").is_dir() and _class_folders(folder / "train"):
        classes = [p.name for p in _class_folders(folder / "train")]
        train = _listing(folder / "train", classes)
        if not (folder / "test").is_dir():
            raise DataError(f"{folder} has a train/ folder but no test/ folder; add test/<class>/ "
                            f"images, or put the class folders directly in {folder} to hold out a "
                            f"test split.")
        unknown = sorted({p.name for p in _class_folders(folder / "test")} - set(classes))
        if unknown:
            raise DataError(f"{folder / 'test'} has classes that train/ lacks: "
                            f"{', '.join(unknown)}.")
        test = _listing(folder / "test", classes)
    elif _class_folders(folder):
        classes = [p.name for p in _class_folders(folder)]
        train, test = _hold_out(_listing(folder, classes))
    elif _images_in(folder):
        classes = None
        train, test = _hold_out([(p, 0) for p in _images_in(folder)])
    else:
        raise DataError(f"{folder} holds no images: expected class folders of .png/.jpg files "
                        f"(FOLDER/<class>/*.png, or FOLDER/train/<class>/ and "
                        f"FOLDER/test/<class>/).")
    for split, files in (("training", train), ("test", test)):
        if not files:
            raise DataError(f"{folder}: the {split} split is empty (fewer than {HOLD_OUT} images "
                            f"per class leave none to hold out); add images or a test/ folder.")
    digest = hashlib.sha256()
    shape, first = _layout(train[0][0])
    arrays = {}
    for split, files in (("train", train), ("test", test)):
        with budget.sink(shape, np.uint8, len(files)) as sink:
            for path, _ in files:
                sink.write(_decode(path, shape, first, folder, digest)[None])
        arrays[split] = sink.finish()
    labels = {split: None if classes is None else np.array([c for _, c in files], np.int64)
              for split, files in (("train", train), ("test", test))}
    return ImageSet(arrays["train"], labels["train"], arrays["test"], labels["test"],
                    image_shape=shape, name=safe_name(folder.resolve().name),
                    num_classes=len(classes) if classes else 0,
                    class_names=tuple(classes) if classes else None,
                    source=str(folder.resolve()),
                    fingerprint=combine_digests(("files", digest.hexdigest())))


def _listing(folder, classes):
    return [(path, label) for label, name in enumerate(classes)
            if (folder / name).is_dir() for path in _images_in(folder / name)]


def _hold_out(files):
    """(train, test) by the held-out rule of the module docstring."""
    train, test = [], []
    for label in sorted({c for _, c in files}):
        paths = [p for p, c in files if c == label]  # sorted by name already
        order = np.random.default_rng([0, label]).permutation(len(paths))
        held = set(order[:len(paths) // HOLD_OUT].tolist())
        for i, path in enumerate(paths):
            (test if i in held else train).append((path, label))
    return train, test


def _open(path):
    """``(raw bytes, image)``: the file decoded by Pillow as 8-bit grey ("L") or colour ("RGB"),
    each mode read for what it is: 16-bit grey scaled to 8 bits (not clipped), palette images
    (GIF) grey when their palette is, alpha dropped; 32-bit and float images refused by name, as
    are images past Pillow's decompression-bomb limit."""
    from PIL import Image, UnidentifiedImageError  # Here: Pillow is needed for image folders only.
    raw = path.read_bytes()
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except Image.DecompressionBombError as e:
        raise DataError(f"{path} is too large to decode safely ({e}); shrink it or remove it."
                        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path} cannot be read as an image ({type(e).__name__}: {e}); replace or "
                        f"remove it.") from None
    if image.mode.startswith("I;16"):  # 16-bit grey: 0..65535 onto 0..255
        wide = np.asarray(image).astype(np.float64)
        return raw, Image.fromarray(np.round(wide / 257).astype(np.uint8))
    if image.mode in ("I", "F"):
        raise DataError(f"{path} is a {'32-bit integer' if image.mode == 'I' else 'float'} image; "
                        f"save it as 8-bit (or 16-bit) grey or colour.")
    if image.mode == "P" and _grey_palette(image):
        return raw, image.convert("L")
    return raw, image.convert("L" if image.mode in ("1", "L", "LA") else "RGB")


def _grey_palette(image):
    """Whether every colour a palette image uses is a grey (red = green = blue)."""
    rgb = np.asarray(image.convert("RGB"))
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1],
                                                                             rgb[..., 2]))


def _layout(path):
    _, image = _open(path)
    return (image.height, image.width, 1 if image.mode == "L" else 3), path


def _decode(path, shape, first, folder, digest):
    raw, image = _open(path)
    got = (image.height, image.width, 1 if image.mode == "L" else 3)
    if got[:2] != shape[:2]:
        raise DataError(f"images of different sizes: {first} is {shape[1]}x{shape[0]} but "
                        f"{path} is {got[1]}x{got[0]} (width x height). "
                        f"Resize them to one size first.")
    if got[2] != shape[2]:
        kinds = {1: "grey", 3: "colour"}
        raise DataError(f"{first} is {kinds[shape[2]]} but {path} is {kinds[got[2]]}: convert the "
                        f"images to one kind first.")
    digest.update(str(path.relative_to(folder)).encode() + b"\0" + raw)
    return np.asarray(image, np.uint8).reshape(shape)
