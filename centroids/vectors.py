"""How vectors are stored: little-endian float32 in one BSON binary field, and read back.

Every stored vector or matrix (cached embeddings, centroids, prototypes, whitening, the age
model's weights) is one :class:`bson.binary.Binary` of BSON's vector subtype (9) with dtype
float32, the form MongoDB's vector search reads, made and read by pymongo's own
``Binary.from_vector`` and ``Binary.as_vector``. A matrix is stored row after row; its reader
knows the row length (128 for every matrix here).

Read back, a value may also be:

- plain ``bytes`` holding the same payload: montydb's embedded storage keeps binary fields as
  base64 in JSON and forgets their subtype, so it returns the vector header and data as bytes;
- a list of floats (or of lists of floats): documents written by earlier versions, read as
  before.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from bson.binary import Binary, BinaryVectorDtype

VECTOR_SUBTYPE = 9
_FLOAT32_HEADER = bytes([BinaryVectorDtype.FLOAT32.value[0], 0])  # dtype, padding


def pack(values: Any) -> Binary:
    """``values`` (a vector or a matrix, any float type) as one float32 BSON vector."""
    flat = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
    return Binary.from_vector(flat, BinaryVectorDtype.FLOAT32)


def is_packed(value: Any) -> bool:
    """Whether ``value`` is a stored float32 vector (a BSON vector, or montydb's bytes of one)."""
    return isinstance(value, bytes) and bytes(value[:2]) == _FLOAT32_HEADER


def unpack(value: Any, dtype: Any = np.float64, columns: int | None = None) -> np.ndarray:
    """A stored vector as a numpy array of ``dtype``: a packed vector or, from earlier versions,
    a list of floats (or of lists). ``columns`` reshapes it into rows of that length.

    :raises ValueError: bytes that are not a float32 vector, or a length that is not a whole
        number of rows
    """
    if isinstance(value, bytes):
        binary = value if isinstance(value, Binary) else Binary(value, VECTOR_SUBTYPE)
        vector = binary.as_vector(return_numpy=True)
        if vector.dtype != BinaryVectorDtype.FLOAT32:
            raise ValueError(f"a stored vector of {vector.dtype.name}, not FLOAT32")
        out = vector.data.astype(dtype)  # a copy: the buffer read is not kept
    else:
        out = np.asarray(value, dtype=dtype)
    if columns is not None:
        if out.size % columns:
            raise ValueError(f"{out.size} values are not rows of {columns}")
        out = out.reshape(-1, columns)
    return out
