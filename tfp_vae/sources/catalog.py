"""Any image dataset of the TensorFlow Datasets catalog: ``--dataset=tfds:NAME`` (e.g.
``tfds:fashion_mnist``, ``tfds:kmnist``, ``tfds:emnist/digits``, ``tfds:cifar10``,
``tfds:svhn_cropped``).

The dataset is prepared by TFDS (downloaded the first time, which needs internet, or found
prepared in ``data_dir``). Its image feature (``image`` or the only ``tfds.features.Image``) and
class label (``label`` or the only ``tfds.features.ClassLabel``, optional) are read from the
``train`` and ``test`` splits, streaming, into memory or, above the memory budget, into a file
read batch by batch. Images must all have one size (TFDS declares it).
"""

import hashlib

import numpy as np

from tfp_vae.errors import Error
from tfp_vae.sources.common import DataError, ImageSet, MemoryBudget, combine_digests, safe_name

SPLITS = ("train", "test")


def load(name, data_dir=None, budget=None, train_split="train"):
    """The :class:`~tfp_vae.sources.common.ImageSet` of TFDS dataset ``name`` (a catalog name,
    optionally with config and version, e.g. ``emnist/digits``)."""
    tfds = _tfds()
    budget = MemoryBudget.of(budget)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001  TFDS raises its own types for unknown names.
        raise DataError(f"--dataset=tfds:{name}: TFDS does not know this dataset "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                        f"See tfds.list_builders() for the names.") from None
    features = builder.info.features
    image_key = _feature(features, tfds.features.Image, "image", name, required=True)
    label_key = _feature(features, tfds.features.ClassLabel, "label", name, required=False)
    shape = tuple(features[image_key].shape)
    if None in shape:
        raise DataError(f"tfds:{name}: its images have no fixed size ({shape}); tfp_vae needs "
                        f"images of one size.")
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise DataError(f"tfds:{name}: images of shape {shape}; tfp_vae needs (height, width, 1 "
                        f"or 3).")
    known = list(builder.info.splits)
    for split in (train_split, "test"):
        if known and split not in known:
            raise DataError(f"tfds:{name} has no {split!r} split (it has: {', '.join(known)}).")
    try:
        builder.download_and_prepare()
        splits = {s: _read(builder, split, image_key, label_key, shape, budget)
                  for s, split in (("train", train_split), ("test", "test"))}
    except Error:  # the data's fault (DataError) or the spill's (WriteError): as they are
        raise
    except Exception as e:  # noqa: BLE001  TFDS raises many types for "cannot download".
        raise DataError(f"tfds:{name} could not be prepared ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}). TFDS "
                        f"downloads a dataset the first time, which needs internet access; "
                        f"offline, pass --data_dir=FOLDER with the data as files (IDX, .npz or an "
                        f"image folder).") from None
    for split, (images, _, _) in splits.items():
        if len(images) == 0:
            raise DataError(f"tfds:{name}: the {split} split is empty.")
    names = tuple(features[label_key].names) if label_key else None
    return ImageSet(splits["train"][0], splits["train"][1], splits["test"][0], splits["test"][1],
                    image_shape=shape, name="tfds-" + safe_name(name.replace("/", "-")),
                    num_classes=len(names) if names else 0, class_names=names,
                    source=f"tfds:{name}" + (f" in {data_dir}" if data_dir else ""),
                    fingerprint=combine_digests(*((s, d) for s, (_, _, d) in splits.items())))


def _tfds():
    """TensorFlow Datasets, imported on use (it is an optional extra: about 220 MB installed)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError("--dataset=tfds:NAME needs TensorFlow Datasets, an optional part of "
                        "tfp_vae: pip install 'tfp_vae[tfds]' (from a clone: pip install -e "
                        "'.[tfds]').") from None
    return tfds


def _feature(features, kind, preferred, name, required):
    keys = [k for k, f in features.items() if isinstance(f, kind)]
    if preferred in keys:
        return preferred
    if len(keys) == 1:
        return keys[0]
    if required or keys:
        what = "image" if required else "class label"
        raise DataError(f"tfds:{name} has {len(keys) or 'no'} {what} features "
                        f"({', '.join(keys) or 'none'}); tfp_vae needs exactly one (or one named "
                        f"{preferred!r}).")
    return None


def _read(builder, split, image_key, label_key, shape, budget):
    tfds = _tfds()
    ds = builder.as_dataset(split=split, shuffle_files=False)
    count = int(ds.cardinality())
    labels, digest = [], hashlib.sha256()
    with budget.sink(shape, np.uint8, count if count >= 0 else None) as sink:
        for batch in tfds.as_numpy(ds.batch(1024)):
            images = np.asarray(batch[image_key], np.uint8).reshape(-1, *shape)
            digest.update(images.data)
            sink.write(images)
            if label_key:
                labels.append(np.asarray(batch[label_key], np.int64))
    y = np.concatenate(labels) if labels else (np.zeros(0, np.int64) if label_key else None)
    if y is not None:
        digest.update(y.tobytes())
    return sink.finish(), y, digest.hexdigest()
