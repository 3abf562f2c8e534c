"""tfp_vae: the VAE family of CS236 HW2 as Keras 3 models with TensorFlow Probability."""

import os

import setuptools


TFDS = ["tensorflow-datasets>=4.9,<4.10", "importlib_resources>=5"]


def pretrained_files():
    """``data_files`` entries that copy savedmodels/ to <prefix>/share/tfp_vae/savedmodels, where
    tfp_vae.pretrained finds them after a plain (non-editable) install."""
    entries = []
    for folder, _, names in os.walk("savedmodels"):
        if names:
            entries.append((os.path.join("share", "tfp_vae", folder),
                            [os.path.join(folder, name) for name in sorted(names)]))
    return entries


setuptools.setup(
    name="tfp_vae",
    version="0.1.0",
    description="VAE, GMVAE, IWAE, SSVAE and FSVAE as Keras 3 models with TFP distributions.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["tfp_vae", "tfp_vae.*"]),
    package_data={"tfp_vae": ["mnist/*.gz"]},
    scripts=["bin/train", "bin/sample", "bin/evaluate"],
    data_files=pretrained_files(),
    # Pinned to the versions that work together: TFP 0.25 is built against TF 2.21 (its [tf]
    # extra brings tf-keras, which TFP imports; our code uses Keras 3). Pillow decodes image
    # folders (tfp_vae.sources).
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorboard>=2.21,<2.22",  # TF 2.21 no longer depends on it; the board needs it
        "tensorflow-probability[tf]>=0.25,<0.26",
        "numpy>=1.26",
        "absl-py>=2",
        "pillow>=10",
        "matplotlib>=3.8",  # the pictures of a run (tfp_vae.pictures)
    ],
    extras_require={
        # --dataset=tfds:NAME only: 221 MB of 2.58 GB installed, 65 MB of 744 MB downloaded
        # (measured in fresh environments; pyarrow is most of it). TFDS 4.9.10 imports
        # importlib_resources without declaring it.
        "tfds": TFDS,
        # SciPy writes the tests' SVHN .mat files (the package reads them without it);
        # pytest-xdist runs the suite on both cores; the tests also cover the TFDS source, run
        # the exports in onnxruntime (converted by tf2onnx: the first release without an old
        # protobuf pin) and lint with ruff.
        "test": ["pytest>=8", "pytest-xdist>=3", "hypothesis>=6", "scipy>=1.11",
                 "tf2onnx>=1.17", "onnx>=1.17", "onnxruntime>=1.20", "ruff>=0.6"] + TFDS,
    },
)
