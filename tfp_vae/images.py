"""Image grids as PNG files. Needs only NumPy and TensorFlow (``bin/sample`` uses it without
loading Keras, TFP or the models)."""

import numpy as np
import tensorflow as tf

from tfp_vae import files


# Pictures are at most this many pixels a side (larger grids are shrunk by block means): PNG
# encoders and TensorBoard refuse pictures of tens of thousands of pixels.
MAX_SIDE = 4096
# Images smaller than this are enlarged (by whole pixels) and separated by a grey line in grids.
READABLE = 28


def tile(images, rows, cols, height=28, width=28, channels=1):
    """(rows*cols, h*w*c) or (rows*cols, h, w[, c]) values in [0, 1] -> a grid, filled row by
    row: (rows*h, cols*w, c) for images of at least 28 pixels a side (MNIST's grid, as the
    reference draws it); smaller ones are enlarged by a whole factor to at least 28 pixels and
    separated by 2-pixel grey lines, so that 8x8 images stay readable."""
    images = np.asarray(images, np.float32)
    if images.shape[0] != rows * cols:
        raise ValueError(f"a {rows}x{cols} grid needs {rows * cols} images, got {images.shape[0]}.")
    images = images.reshape(rows, cols, height, width, channels)
    scale = -(-READABLE // min(height, width))
    if scale == 1:
        return images.transpose(0, 2, 1, 3, 4).reshape(rows * height, cols * width, channels)
    gap = 2
    images = images.repeat(scale, 2).repeat(scale, 3)
    images = np.pad(images, [(0, 0), (0, 0), (0, gap), (0, gap), (0, 0)], constant_values=0.5)
    h, w = images.shape[2:4]
    grid = images.transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, channels)
    return grid[:-gap, :-gap]


def shown_classes(num_classes, most=20):
    """The classes a picture shows one row each: all of them up to ``most``, else ``most``
    evenly spread from the first to the last."""
    if num_classes <= most:
        return np.arange(num_classes)
    return np.unique(np.round(np.linspace(0, num_classes - 1, most)).astype(int))


def class_rows(grid, num_classes, columns):
    """``(pictures, rows, columns)`` of the :func:`shown_classes` rows of a class grid (row-major,
    ``num_classes`` rows of ``columns``)."""
    shown = shown_classes(num_classes)
    if len(shown) == num_classes:
        return grid, num_classes, columns
    rows = np.asarray(grid).reshape(num_classes, columns, -1)[shown]
    return rows.reshape(len(shown) * columns, -1), len(shown), columns


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
    """Writes a (H, W, C) grid of values in [0, 1] as an 8-bit PNG, atomically (temp + rename);
    a grid over :data:`MAX_SIDE` pixels a side is shrunk by a whole factor (block means)."""
    grid = np.asarray(grid, np.float32)
    factor = -(-max(grid.shape[:2]) // MAX_SIDE)
    if factor > 1:
        h, w = (-(-d // factor) * factor for d in grid.shape[:2])
        padded = np.pad(grid, [(0, h - grid.shape[0]), (0, w - grid.shape[1]), (0, 0)])
        grid = padded.reshape(h // factor, factor, w // factor, factor, -1).mean((1, 3))
    pixels = np.clip(np.round(grid * 255), 0, 255).astype(np.uint8)
    return files.write_bytes_atomic(path, tf.io.encode_png(pixels).numpy())


def heatmap(matrix, cell=24):
    """A matrix as a picture: one square of at most ``cell`` pixels per entry (smaller for many
    classes, so that the picture stays within :data:`MAX_SIDE`), brightness = the entry's share
    of its row (for confusion matrices: white = all of that class)."""
    matrix = np.asarray(matrix, np.float64)
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    cell = max(1, min(cell, MAX_SIDE // max(1, len(share))))
    return np.kron(share, np.ones((cell, cell)))[..., None]
