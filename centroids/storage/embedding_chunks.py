"""The embedding cache's documents: chunks of many faces, written and read in bulk.

One document holds up to :data:`CHUNK` cached faces of one embedding setting, their vectors in
one float32 binary field (:mod:`centroids.vectors`), one row per face in the order of ``hashes``::

    {"_id": "<settings>:<sha256 of the hashes>", "settings": "<settings>", "count": n,
     "hashes": [image sha256, ...], "labels": [...], "paths": [...],
     "faces_found": [...], "boxes": [[top, right, bottom, left] | null, ...],
     "errors": [code | null, ...], "no_vector": [indices of faces without an embedding],
     "vectors": <float32 vector of n * 128 values; zeros for the faces in no_vector>}

Why chunks: the embedded database (montydb) pays per document, not per byte. It keeps each
document as JSON text, checks every inserted id against a list of every stored id (an insert
costs in proportion to the documents already stored: 100k one-face documents took minutes), and
decodes each document in Python. A chunk of 256 faces costs about what one face did. MongoDB
would take one-face documents well, but the same schema serves both.

A chunk's ``_id`` is a digest of its hashes, so writing the same chunk twice (a retried write)
stores it once. A face may still be stored in two chunks (two builds embedding the same image at
once, an interrupted migration); readers keep its first copy, which is equal to any other (the
same image with the same settings).

One face by its image hash: ``{"settings": key, "hashes": sha}`` (MongoDB answers it from the
index on ``hashes``, see :func:`indexes`; montydb scans, as it does for any query).

Documents of earlier versions, one face each (``{"_id": "<sha>:<settings>", "vector": [128
floats] | null, "box", "faces_found", "error", ...}``), are read as before;
``anfe centroids migrate`` rewrites them as chunks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from anfe.centroids import vectors

CHUNK = 256  # faces per document
_NO_BOX = (-1, -1, -1, -1)
DIM = 128
# what a build reads of a chunk (not the labels and paths, kept for people looking)
LOAD_FIELDS = {
    "hashes": 1, "faces_found": 1, "boxes": 1, "errors": 1, "no_vector": 1, "vectors": 1,
    # one-face documents of earlier versions
    "vector": 1, "box": 1, "error": 1,
}  # fmt: skip


def chunk_id(settings_key: str, hashes: list[str]) -> str:
    digest = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    return f"{settings_key}:{digest}"


def chunk_documents(
    entries: Iterable[dict[str, Any]], size: int | None = None
) -> list[dict[str, Any]]:
    """Chunk documents of the one-face ``entries`` (as ``Embedded.to_doc`` makes them: ``_id``
    ``<sha>:<settings>``, ``settings``, ``label``, ``path``, ``vector`` (any float array or
    None), ``box``, ``faces_found``, ``error``), each face once, ``size`` at most per chunk, one
    setting per chunk."""
    by_settings: dict[str, dict[str, dict[str, Any]]] = {}
    for e in entries:
        sha = e["_id"].split(":", 1)[0]
        by_settings.setdefault(e["settings"], {}).setdefault(sha, e)
    docs = []
    size = size or CHUNK
    for key, faces in by_settings.items():
        it = iter(faces.items())
        while batch := list(islice(it, size)):
            docs.append(_chunk(key, batch))
    return docs


def _chunk(key: str, batch: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    hashes = [sha for sha, _ in batch]
    rows = np.zeros((len(batch), DIM), dtype="<f4")
    missing = []
    for i, (_, e) in enumerate(batch):
        if e.get("vector") is None:
            missing.append(i)
        else:
            rows[i] = vectors.unpack(e["vector"], np.float32)
    return {
        "_id": chunk_id(key, hashes),
        "settings": key,
        "count": len(batch),
        "hashes": hashes,
        "labels": [e.get("label") for _, e in batch],
        "paths": [e.get("path") for _, e in batch],
        "faces_found": [int(e.get("faces_found", 0)) for _, e in batch],
        "boxes": [None if e.get("box") is None else [int(v) for v in e["box"]] for _, e in batch],
        "errors": [e.get("error") for _, e in batch],
        "no_vector": missing,
        "vectors": vectors.pack(rows),
    }


def is_chunk(doc: dict[str, Any]) -> bool:
    return "hashes" in doc


@dataclass
class CachedFaces:
    """Every cached face of one setting, held once: a float32 matrix and a few small arrays.

    ``rows`` maps an image hash to its row; a face without an embedding (no face, several, an
    unreadable file) has ``has_vector`` false and a row of zeros.
    """

    rows: dict[str, int] = field(default_factory=dict)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), dtype=np.float32))
    has_vector: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    faces_found: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int32))
    errors: dict[int, str] = field(default_factory=dict)  # row -> code (few)

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, sha: object) -> bool:
        return sha in self.rows

    def face(self, sha: str) -> dict[str, Any]:
        """One face: ``sha256``, ``faces_found``, ``vector`` (a float32 view of its row, or
        None), ``box`` and ``error``."""
        i = self.rows[sha]
        box = self.boxes[i].tolist()
        return {
            "sha256": sha,
            "faces_found": int(self.faces_found[i]),
            "vector": self.vectors[i] if self.has_vector[i] else None,
            "box": None if box[0] < 0 else tuple(box),
            "error": self.errors.get(i),
        }


def records(docs: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every face of ``docs`` (whole chunks or one-face documents) as a one-face record, in the
    form of the one-face documents of earlier versions (``_id`` ``<sha>:<settings>``,
    ``settings``, ``label``, ``path``, ``vector`` a float32 array or None, ``box``,
    ``faces_found``, ``error``), each face once."""
    seen: set[str] = set()
    for doc in docs:
        if not is_chunk(doc):
            if doc["_id"] not in seen:
                seen.add(doc["_id"])
                vec = doc.get("vector")
                yield {**doc, "vector": None if vec is None else vectors.unpack(vec, np.float32)}
            continue
        block = vectors.unpack(doc["vectors"], np.float32, DIM)
        missing = set(doc.get("no_vector", ()))
        for i, sha in enumerate(doc["hashes"]):
            rid = f"{sha}:{doc['settings']}"
            if rid in seen:
                continue
            seen.add(rid)
            yield {
                "_id": rid,
                "settings": doc["settings"],
                "label": doc["labels"][i],
                "path": doc["paths"][i],
                "vector": None if i in missing else block[i],
                "box": doc["boxes"][i],
                "faces_found": doc["faces_found"][i],
                "error": doc["errors"][i],
            }


class _Growing:
    """Columns filled row by row, their capacity doubled when full (a copy per doubling only)."""

    def __init__(self, capacity: int = 4096) -> None:
        self.n = 0
        self.vectors = np.zeros((capacity, DIM), dtype=np.float32)
        self.has_vector = np.zeros(capacity, dtype=bool)
        self.faces_found = np.zeros(capacity, dtype=np.int32)
        self.boxes = np.full((capacity, 4), -1, dtype=np.int32)  # -1: no box

    def reserve(self, more: int) -> None:
        need = self.n + more
        if need <= len(self.vectors):
            return
        size = max(need, 2 * len(self.vectors))
        for name in ("vectors", "has_vector", "faces_found", "boxes"):
            old = getattr(self, name)
            # zeros: the system maps pages as rows are written, so unused capacity costs nothing
            new = np.zeros((size, *old.shape[1:]), dtype=old.dtype)
            if name == "boxes":
                new[self.n :] = -1
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def done(self) -> tuple[np.ndarray, ...]:
        n = self.n
        return self.vectors[:n], self.has_vector[:n], self.faces_found[:n], self.boxes[:n]


def load(docs: Iterator[dict[str, Any]]) -> CachedFaces:
    """The faces of ``docs`` (chunks and one-face documents of one setting, as queried with
    :data:`LOAD_FIELDS`), each once, into one :class:`CachedFaces`."""
    out = CachedFaces()
    cols = _Growing()
    rows = out.rows
    for doc in docs:
        if is_chunk(doc):
            hashes = doc["hashes"]
            block = vectors.unpack(doc["vectors"], np.float32, DIM)
            if len(block) != len(hashes):
                raise ValueError(
                    f"cache chunk {doc['_id']!r} holds {len(block)} rows for {len(hashes)} faces"
                )
            new = [i for i, sha in enumerate(hashes) if sha not in rows]
            if not new:
                continue
            take = np.asarray(new, dtype=np.intp)
            cols.reserve(len(new))
            span = slice(cols.n, cols.n + len(new))
            cols.vectors[span] = block[take]
            has = np.ones(len(hashes), dtype=bool)
            has[list(doc.get("no_vector", ()))] = False
            cols.has_vector[span] = has[take]
            cols.faces_found[span] = np.asarray(doc["faces_found"], dtype=np.int32)[take]
            boxes, errors = doc["boxes"], doc["errors"]
            cols.boxes[span] = [_NO_BOX if boxes[i] is None else boxes[i] for i in new]
            for r, i in enumerate(new, cols.n):
                rows[hashes[i]] = r
                if errors[i] is not None:
                    out.errors[r] = errors[i]
            cols.n += len(new)
        else:
            sha = doc["_id"].split(":", 1)[0]
            if sha in rows:
                continue
            cols.reserve(1)
            r = cols.n
            rows[sha] = r
            if doc.get("vector") is not None:
                cols.vectors[r] = vectors.unpack(doc["vector"], np.float32)
                cols.has_vector[r] = True
            cols.faces_found[r] = int(doc.get("faces_found", 0))
            if doc.get("box") is not None:
                cols.boxes[r] = doc["box"]
            if doc.get("error") is not None:
                out.errors[r] = doc["error"]
            cols.n += 1
    out.vectors, out.has_vector, out.faces_found, out.boxes = cols.done()
    return out


def release_freed_memory(collect: bool = False) -> None:
    """Hand the memory freed by a bulk read back to the system, where the C library allows.

    montydb decodes every document of a query before returning the first, and its documents stay
    in reference cycles until the garbage collector runs (``collect``: run it first); once
    freed, glibc keeps most of that memory in the process (between the faces kept): about
    150 MiB for 100k faces. ``malloc_trim`` returns it; elsewhere this does nothing more.
    """
    if collect:
        gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
