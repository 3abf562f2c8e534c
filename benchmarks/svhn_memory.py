"""Memory of loading an SVHN .mat file: the images must be held once, not twice.

    python benchmarks/svhn_memory.py --n=100000     # about 300 MB of images; a few seconds

Writes a file of ``n`` random images in the official layout (X (32, 32, 3, N) uint8, y (N, 1),
MATLAB 5, zlib-compressed), loads it with :func:`tfp_vae.svhn.read_mat` in a fresh child process
and reports how much that raised the child's peak resident memory (Linux /proc), next to the size of the images.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import scipy.io

_CHILD = r"""
import sys
from tfp_vae import svhn

def status(key):  # kB fields of /proc/self/status (Linux)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the current resident size
before = status("VmRSS")
images, labels = svhn.read_mat(sys.argv[1])
print(status("VmHWM") - before, status("VmRSS") - before, images.nbytes)
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="images in the test file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "extra_32x32.mat")
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (32, 32, 3, args.n), dtype=np.uint8)
        scipy.io.savemat(path, {"X": x, "y": (np.arange(args.n) % 10 + 1).astype(np.uint8)[:, None]},
                         do_compression=True)
        del x
        out = subprocess.run([sys.executable, "-c", _CHILD, path], capture_output=True, text=True,
                             check=True).stdout.split()
    peak, held, size = (int(v) for v in out)
    print(f"{args.n} images: {size / 2**20:.0f} MiB of uint8; loading raised peak memory by "
          f"{peak / 2**20:.0f} MiB ({peak / size:.2f}x the images) and left "
          f"{held / 2**20:.0f} MiB held ({held / size:.2f}x)")


if __name__ == "__main__":
    main()
