"""A streaming reader of MATLAB 5 ``.mat`` files (the format of SVHN's official files).

Written by hand because ``scipy.io.loadmat`` reads a file (and each compressed variable) whole:
SVHN's ``extra_32x32.mat`` would take 1.6 GB before anything could go to disk. This reader walks
the file's data elements (MATLAB's "MAT-File Format", level 5: a 128-byte header, then elements
of an 8-byte tag and their data, zlib-compressed ones inflated as they are read) and hands each
numeric variable's data to a callback as a stream, so a large variable can be written on as it
is inflated. Only what SVHN needs is supported: numeric matrices, compressed or not, either byte
order; other classes (cells, structs, sparse) are skipped, and version 7.3 (HDF5) files are
refused with a message.
"""

import hashlib
import struct
import zlib

import numpy as np

from tfp_vae.sources.common import DataError

_MI_TYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.uint16, 5: np.int32, 6: np.uint32,
             7: np.float32, 9: np.float64, 12: np.int64, 13: np.uint64}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_NUMERIC_CLASSES = {6: "double", 7: "single", 8: "int8", 9: "uint8", 10: "int16", 11: "uint16",
                    12: "int32", 13: "uint32", 14: "int64", 15: "uint64"}
_BLOCK = 1 << 20


class _Source:
    """The file, read forward only, digested as it is read."""

    def __init__(self, f):
        self.f, self.digest, self.position = f, hashlib.sha256(), 0

    def read(self, n):
        raw = self.f.read(n)
        self.digest.update(raw)
        self.position += len(raw)
        return raw

    def exact(self, n):
        raw = self.read(n)
        if len(raw) != n:
            raise EOFError(f"the file ends {n - len(raw)} bytes early")
        return raw

    def skip(self, n):
        while n > 0:
            raw = self.read(min(n, _BLOCK))
            if not raw:
                raise EOFError("the file ends early")
            n -= len(raw)


class _Region:
    """``nbytes`` of the file as a stream (an uncompressed element's data)."""

    def __init__(self, source, nbytes):
        self.source, self.left = source, nbytes

    def exact(self, n):
        if n > self.left:
            raise EOFError("an element's data is shorter than its parts declare")
        self.left -= n
        return self.source.exact(n)

    def finish(self):
        self.source.skip(self.left)
        self.left = 0


class _Inflated:
    """A zlib-compressed element of ``nbytes`` as a stream of its inflated bytes."""

    def __init__(self, source, nbytes):
        self.source, self.left = source, nbytes
        self.inflate = zlib.decompressobj()
        self.pending = b""

    def exact(self, n):
        parts, got = [], 0
        while got < n:
            if not self.pending:
                if self.inflate.unconsumed_tail:
                    data = self.inflate.unconsumed_tail
                elif self.left > 0:
                    data = self.source.exact(min(self.left, _BLOCK))
                    self.left -= len(data)
                else:
                    raise EOFError("a compressed element ends early")
                self.pending = self.inflate.decompress(data, max(n - got, _BLOCK))
                continue
            take = self.pending[:n - got]
            self.pending = self.pending[len(take):]
            parts.append(take)
            got += len(take)
        return b"".join(parts)

    def finish(self):
        self.source.skip(self.left)
        self.left = 0


def _tag(stream, order):
    """(type, nbytes, small data or None) of the element tag at the stream's position."""
    raw = stream.exact(8)
    kind, nbytes = struct.unpack(order + "II", raw)
    if kind >> 16:  # small data element: 2-byte size, 2-byte type, then the data in 4 bytes
        return kind & 0xFFFF, kind >> 16, raw[4:4 + (kind >> 16)]
    return kind, nbytes, None


def _padded(stream, nbytes):
    data = stream.exact(nbytes)
    if nbytes % 8:
        stream.exact(8 - nbytes % 8)
    return data


def read(path, handle):
    """Reads the MATLAB 5 file ``path``, calling ``handle(name, dims, dtype, nbytes, read)`` for
    each numeric matrix: ``dims`` its MATLAB dimensions (column-major), ``dtype`` and ``nbytes``
    those of its real part's data, ``read(n)`` the next n of those bytes. What ``handle`` does
    not read is skipped.

    Returns:
      The SHA-256 hex digest of the whole file.
    Raises:
      DataError: not a MATLAB 5 file, or truncated or corrupt.
    """
    with open(path, "rb") as f:
        source = _Source(f)
        try:
            header = source.exact(128)
            if header[:6] == b"MATLAB" and b"7.3" in header[:20]:
                raise DataError(f"{path} is a MATLAB 7.3 (HDF5) file; save it with "
                                f"save(..., '-v7') or convert it to .npz.")
            order = {b"IM": "<", b"MI": ">"}.get(header[126:128])
            if header[:6] != b"MATLAB" or order is None:
                raise DataError(f"{path} is not a MATLAB 5 .mat file.")
            while True:
                raw = source.read(8)
                if not raw:
                    break
                if len(raw) != 8:
                    raise EOFError("the file ends inside an element's tag")
                kind, nbytes = struct.unpack(order + "II", raw)
                stream = _Inflated(source, nbytes) if kind == _MI_COMPRESSED else \
                    _Region(source, nbytes)
                if kind == _MI_COMPRESSED:
                    kind, _, _ = _tag(stream, order)  # the inflated element's own tag
                if kind == _MI_MATRIX:
                    _matrix(stream, order, handle)
                stream.finish()
                if isinstance(stream, _Region) and nbytes % 8:
                    source.skip(8 - nbytes % 8)
        except (EOFError, zlib.error, struct.error) as e:
            raise DataError(f"{path} is truncated or corrupt ({e}).") from None
        while source.read(_BLOCK):  # digest the rest
            pass
    return source.digest.hexdigest()


def _matrix(stream, order, handle):
    _, _, small = _tag(stream, order)
    flags = small if small is not None else _padded(stream, 8)
    array_class = struct.unpack(order + "I", flags[:4])[0] & 0xFF
    kind, nbytes, small = _tag(stream, order)
    dims = small if small is not None else _padded(stream, nbytes)
    dims = struct.unpack(order + "i" * (len(dims) // 4), dims)
    kind, nbytes, small = _tag(stream, order)
    name = (small if small is not None else _padded(stream, nbytes)).decode("latin-1")
    if array_class not in _NUMERIC_CLASSES:
        return
    kind, nbytes, small = _tag(stream, order)
    if kind not in _MI_TYPES:
        raise EOFError(f"variable {name!r} has data of unknown type {kind}")
    dtype = np.dtype(_MI_TYPES[kind]).newbyteorder(order)
    if small is not None:
        data = [small]
        handle(name, dims, dtype, nbytes, lambda n: data.pop() if data else b"")
    else:
        handle(name, dims, dtype, nbytes, stream.exact)
