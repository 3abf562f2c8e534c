"""Peak memory of loading data with tfp_vae.sources, at the default memory budget and a small one.

    python benchmarks/data_memory.py --n=200000      # about 150 MB of 28x28 images per format

Writes ``n`` images of 28x28 (mostly dark, so that gzip is quick) as an MNIST-layout IDX folder
(gzip), a Keras ``.npz`` (compressed), and ``n // 4`` SVHN images as an official-layout ``.mat``
file; loads each in a fresh child process (NumPy only, no TensorFlow) and reads every training
image once, as an epoch does; reports how much that raised the child's peak resident memory
(Linux ``/proc/self/status`` VmHWM), next to the size of the images. Above the budget the images
are read from disk batch by batch, so the peak stays near one decompression chunk.
"""

import argparse
import gzip
import os
import subprocess
import sys
import tempfile

import numpy as np

_CHILD = r"""
import sys
from tfp_vae import sources

def status(key):  # kB fields of /proc/self/status (Linux)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the current resident size
before = status("VmRSS")
dataset = sources.load(sys.argv[1] or None, sys.argv[2], memory_budget=sys.argv[3])
images = dataset.train_images
for start in range(0, len(images), 256):  # every image once, in batches
    images[start:start + 256].sum()
print(status("VmHWM") - before, images.nbytes, type(images).__name__)
"""


def write_files(folder, n):
    rng = np.random.default_rng(0)
    x = np.zeros((n, 28, 28), np.uint8)
    x[:, 10:18, 10:18] = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.uint8)
    idx = os.path.join(folder, "idx")
    os.makedirs(idx)
    for name, array in (("train-images-idx3-ubyte.gz", x), ("t10k-images-idx3-ubyte.gz", x[:1000]),
                        ("train-labels-idx1-ubyte.gz", y), ("t10k-labels-idx1-ubyte.gz", y[:1000])):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                          for d in array.shape)
        with gzip.open(os.path.join(idx, name), "wb", compresslevel=1) as f:
            f.write(header + array.tobytes())
    npz = os.path.join(folder, "data.npz")
    np.savez_compressed(npz, x_train=x, y_train=y, x_test=x[:1000], y_test=y[:1000])
    import scipy.io
    svhn = os.path.join(folder, "svhn")
    os.makedirs(svhn)
    m = n // 4
    big = rng.integers(0, 256, (32, 32, 3, m), dtype=np.uint8)
    labels = (np.arange(m) % 10 + 1).astype(np.uint8)[:, None]
    for name, count in (("extra_32x32.mat", m), ("test_32x32.mat", 1000)):
        scipy.io.savemat(os.path.join(svhn, name), {"X": big[..., :count], "y": labels[:count]},
                         do_compression=True)
    return {"IDX (gzip)": (None, idx), ".npz (compressed)": (None, npz), "SVHN .mat": ("svhn", svhn)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="images per format")
    parser.add_argument("--small", default="64MiB", help="the small memory budget")
    args = parser.parse_args()
    print("| format | budget | held in | images | peak added | peak / images |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for label, (spec, path) in write_files(folder, args.n).items():
            for budget in ("2GiB", args.small):
                out = subprocess.run([sys.executable, "-c", _CHILD, spec or "", path, budget],
                                     capture_output=True, text=True)
                if out.returncode:
                    refused = "more than the memory budget" in out.stderr
                    print(f"| {label} | {budget} | " + ("refused: read whole, over the budget"
                          if refused else out.stderr.strip().splitlines()[-1][:120]) + " | | | |")
                    continue
                peak, size, kind = out.stdout.split()
                peak, size = int(peak), int(size)
                held = "memory" if kind == "ndarray" else "disk"
                print(f"| {label} | {budget} | {held} | {size / 2**20:.0f} MiB | "
                      f"{peak / 2**20:.0f} MiB | {peak / size:.2f}x |")


if __name__ == "__main__":
    main()
