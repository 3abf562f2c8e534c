"""Image grids as PNG files. Needs only NumPy and TensorFlow (``bin/sample`` uses it without
loading Keras, TFP or the models)."""

import numpy as np
import tensorflow as tf

from tfp_vae import files


def tile(images, rows, cols, height=28, width=28, channels=1):
    """(rows*cols, h*w*c) or (rows*cols, h, w[, c]) values in [0, 1] -> a (rows*h, cols*w, c) grid,
    filled row by row."""
    images = np.asarray(images, np.float32)
    if images.shape[0] != rows * cols:
        raise ValueError(f"a {rows}x{cols} grid needs {rows * cols} images, got {images.shape[0]}.")
    images = images.reshape(rows, cols, height, width, channels)
    return images.transpose(0, 2, 1, 3, 4).reshape(rows * height, cols * width, channels)


def grid_shape(n):
    """Rows and columns for n images: twice as many columns as rows where n = 2 r^2 (200 -> 10 x 20,
    the reference grid), else as square as possible with rows <= columns."""
    half = int(round(np.sqrt(n / 2)))
    if 2 * half * half == n:
        return half, 2 * half
    rows = int(np.floor(np.sqrt(n)))
    while n % rows:
        rows -= 1
    return rows, n // rows


def write_png(path, grid):
    """Writes a (H, W, C) grid of values in [0, 1] as an 8-bit PNG, atomically (temp + rename)."""
    pixels = np.clip(np.round(np.asarray(grid) * 255), 0, 255).astype(np.uint8)
    return files.write_bytes_atomic(path, tf.io.encode_png(pixels).numpy())


def heatmap(matrix, cell=24):
    """A matrix as a picture: one ``cell`` x ``cell`` square per entry, brightness = the entry's
    share of its row (for confusion matrices: white = all of that class)."""
    matrix = np.asarray(matrix, np.float64)
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    return np.kron(share, np.ones((cell, cell)))[..., None]
