"""A strict reader for the IDX format of MNIST / Fashion-MNIST (``*-idx3-ubyte[.gz]``).

Layout (big-endian): two zero bytes, a dtype code, the number of dimensions ``d``, then ``d`` 32-bit
sizes, then exactly ``prod(sizes)`` items. Every deviation (bad magic, unknown dtype, truncated or
trailing payload, broken gzip stream) is a :class:`~reslab.errors.DataError` of one line.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from reslab._io import write_bytes
from reslab.errors import DataError

# dtype code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip stream ({type(e).__name__})") from None
    return raw


def read_idx(path: str | os.PathLike, *, ndim: int | None = None, dtype: str | None = None) -> np.ndarray:
    """Read one IDX file (gzip-compressed or raw) into a native-endian numpy array.

    ``ndim`` / ``dtype`` (e.g. ``"uint8"``), when given, are required of the file.
    """
    path = Path(path)
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(buf)} bytes)")
    zero, code, nd = struct.unpack(">HBB", buf[:4])
    if zero != 0 or code not in IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number 0x{buf[:4].hex()})")
    if nd == 0:
        raise DataError(f"{path}: IDX file with zero dimensions")
    header = 4 + 4 * nd
    if len(buf) < header:
        raise DataError(f"{path}: truncated IDX header ({len(buf)} bytes, need {header})")
    dims = struct.unpack(f">{nd}I", buf[4:header])
    dt = IDX_DTYPES[code]
    expected = math.prod(dims) * dt.itemsize  # Python ints: huge dimensions cannot overflow to 0
    got = len(buf) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise DataError(
            f"{path}: IDX payload {what}: {got} bytes for shape {tuple(dims)} of {dt.name} ({expected} expected)"
        )
    if ndim is not None and nd != ndim:
        raise DataError(f"{path}: expected {ndim} dimensions, found shape {tuple(dims)}")
    if dtype is not None and dt.newbyteorder("=") != np.dtype(dtype):
        raise DataError(f"{path}: expected {dtype} data, found {dt.newbyteorder('=').name}")
    arr = np.frombuffer(buf, dtype=dt, offset=header).reshape(dims)
    return arr.astype(dt.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzip when ``compress`` or the name ends in ``.gz``); for tests/tools."""
    path = Path(path)
    arr = np.asarray(array)
    codes = {dt.newbyteorder("="): c for c, dt in IDX_DTYPES.items()}
    native = arr.dtype.newbyteorder("=")
    if native not in codes:
        raise DataError(f"IDX cannot store dtype {arr.dtype}")
    be = arr.astype(native.newbyteorder(">"), copy=False)
    data = struct.pack(">HBB", 0, codes[native], arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data += be.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=6, mtime=0)
    write_bytes(path, data)
