"""The database: open it from a URI and read or write centroid sets and cached embeddings.

``mongodb://`` and ``mongodb+srv://`` URIs open a MongoDB server through pymongo (production,
docker-compose). A path or ``montydb:///path`` opens montydb with its sqlite storage (the
embedded default, ``./.anfe/db``); any other ``scheme://`` is refused. Only the pymongo API
both support is used.

Collections of database ``anfe`` (see DESIGN.md): ``centroids``, one document per centroid set,
written with a single ``replace_one`` so a reader sees either the old or the new document, never
half of one, and stamped at every write with its ``revision`` (the SHA-256 of its other fields),
so a reader can tell a rewritten set from the one it holds by that short field alone; and
``embeddings``, a cache keyed by ``<image sha256>:<embedding settings>``.

montydb scans a whole collection for every query (even by ``_id``), so the embedding cache is
read in bulk, once per build, rather than one document at a time.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from bson.binary import Binary

from anfe.centroids import vectors
from anfe.centroids.errors import CentroidsNotFound, DatabaseUnavailable, InvalidParameter
from anfe.centroids.storage import embedding_chunks
from anfe.centroids.storage.embedding_chunks import CachedFaces

DEFAULT_DB = ".anfe/db"
DB_NAME = "anfe"
CENTROID_ID = re.compile(r"^g_[0-9]+(-[a-z0-9_-]+)?$")
_MONTY_LOCK = threading.Lock()
MIGRATE_BATCH = 4 * embedding_chunks.CHUNK  # one-face documents rewritten per write
URI_SCHEMES = ("mongodb://", "mongodb+srv://", "montydb://")


def default_uri() -> str:
    """``ANFE_DB`` from the environment, else the embedded database under ``./.anfe/db``."""
    return os.environ.get("ANFE_DB") or DEFAULT_DB


def check_uri(uri: str) -> None:
    """Refuse a URI of a scheme we do not open, before anything is created on disk.

    Accepted: ``mongodb://``, ``mongodb+srv://``, ``montydb:///path`` and plain folder paths.

    :raises DatabaseUnavailable: any other ``scheme://`` (``postgres://...``, ``file://...``)
    """
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", uri)
    if scheme and not uri.startswith(URI_SCHEMES):
        raise DatabaseUnavailable(
            f"unsupported database URI scheme {scheme.group(1) + '://'!r}; use mongodb://, "
            "mongodb+srv://, montydb:///path or a folder"
        )


def _is_mongo(uri: str) -> bool:
    return uri.startswith(("mongodb://", "mongodb+srv://"))


def db_kind(uri: str) -> str:
    """``"mongodb"`` for a MongoDB server URI, else ``"montydb"`` (the embedded database)."""
    return "mongodb" if _is_mongo(uri) else "montydb"


def describe_uri(uri: str) -> str:
    """The URI for messages: no credentials, and no server path of an embedded database."""
    if _is_mongo(uri):
        return re.sub(r"//[^/@]*@", "//***@", uri)
    return f"embedded database {Path(_monty_path(uri)).name!r}"


def exists(uri: str) -> bool:
    """Whether the database of ``uri`` is there to be read without creating it: a MongoDB
    server is asked when opened; an embedded database is a folder holding montydb's storage."""
    return _is_mongo(uri) or (_monty_path(uri) / "monty.storage.cfg").is_file()


def short_error(exc: Exception) -> str:
    """A database error in one short line: pymongo's server-selection errors end with the whole
    topology description and the timeouts configured, which say nothing to a reader."""
    text = str(exc).split(", Timeout:")[0].split(" (configured timeouts")[0]
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:199] + "…"


def _is_duplicate(exc: Exception) -> bool:
    text = str(exc)
    return "duplicate" in text.lower() or "E11000" in text or "UNIQUE constraint" in text


class Store:
    """Centroid sets and the embedding cache in one database (MongoDB or montydb).

    An embedded database whose folder this process may not write (a read-only mount, another
    user's folder) is opened read-only: montydb keeps its sqlite files in WAL mode, which
    sqlite cannot read without writing beside them, so the centroid collection is read from a
    private copy, taken again whenever the folder's files change; writes are refused.
    """

    def __init__(self, uri: str | None = None, timeout_ms: int = 3000) -> None:
        self.uri = uri or default_uri()
        check_uri(self.uri)
        self.kind = db_kind(self.uri)
        self.read_only = False
        self._indexed = False
        self._snapshot: ReadOnlySnapshot | None = None
        try:
            if self.kind == "mongodb":
                import pymongo

                self.client = pymongo.MongoClient(
                    self.uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
                )
            else:
                try:
                    self.client = _open_monty(self.uri)
                except ReadOnlyFolder:
                    self._snapshot = ReadOnlySnapshot(_monty_path(self.uri).resolve())
                    self.client = self._snapshot.open()
                    self.read_only = True
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            raise DatabaseUnavailable(
                f"cannot open database {describe_uri(self.uri)}: {exc}"
            ) from None
        self._bind()

    def _bind(self) -> None:
        db = self.client[DB_NAME]
        self.centroids = db["centroids"]
        self.embeddings = db["embeddings"]

    def close(self) -> None:
        self.client.close()
        if self._snapshot is not None:
            self._snapshot.remove()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- health ---------------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise :class:`DatabaseUnavailable` unless the database answers a read.

        montydb answers reads of a folder that has been removed with nothing, so for the embedded
        database the folder itself must still be there.
        """
        if self.kind == "montydb" and not (_monty_path(self.uri) / "monty.storage.cfg").is_file():
            raise DatabaseUnavailable(f"{describe_uri(self.uri)} has gone (its folder is missing)")
        if self._snapshot is not None and self._snapshot.stale():
            self.client.close()
            self.client = self._call(self._snapshot.open)
            self._bind()
        self._call(lambda: self.centroids.find_one({"_id": "__ping__"}))

    def _writable(self) -> None:
        if self.read_only:
            raise DatabaseUnavailable(
                f"{describe_uri(self.uri)} is read-only here: it can be served, not written"
            )

    def _call(self, fn):
        try:
            return fn()
        except (DatabaseUnavailable, CentroidsNotFound, InvalidParameter):
            raise
        except Exception as exc:
            raise DatabaseUnavailable(
                f"database {describe_uri(self.uri)} is unavailable: {type(exc).__name__}: "
                f"{short_error(exc)}"
            ) from None

    # -- centroids ------------------------------------------------------------------------------

    def put_centroids(self, doc: dict[str, Any]) -> None:
        """Write one whole centroid document atomically (insert or replace).

        Its vectors are stored packed as float32 (:func:`compact_centroids`; lists of floats, as
        the shipped JSON sets hold them, are packed on the way). The stored copy also carries ``revision``: :func:`centroid_revision` of ``doc`` (``doc`` itself
        is left as it is). Every write stamps it, so a rewrite that keeps ``created_at`` (``anfe
        centroids fit-age``, a re-seeded shipped set) still changes :meth:`centroids_version`.
        """
        cid = doc.get("_id", "")
        if not CENTROID_ID.match(cid):
            raise InvalidParameter(f"centroid id {cid!r} is not of the form g_N or g_N-mode")
        self._writable()
        doc = compact_centroids(doc)
        stamped = {**doc, "revision": centroid_revision(doc)}
        self._call(lambda: self.centroids.replace_one({"_id": cid}, stamped, upsert=True))

    def find_centroids(self, cid: str) -> dict[str, Any] | None:
        """Return the centroid document ``cid``, or None when there is none."""
        return self._call(lambda: self.centroids.find_one({"_id": cid}))

    def get_centroids(self, cid: str) -> dict[str, Any]:
        """Return the centroid document ``cid`` or raise :class:`CentroidsNotFound`."""
        doc = self.find_centroids(cid)
        if doc is None:
            stored = [d["_id"] for d in self.list_centroids()]
            raise CentroidsNotFound(
                f"no centroid set with id {cid!r}; stored: {', '.join(stored) or 'none'}"
            )
        return doc

    def list_centroids(self, with_vectors: bool = False) -> list[dict[str, Any]]:
        """Every centroid document, smallest size first; vectors left out unless asked for."""
        docs = self._call(lambda: list(self.centroids.find({})))
        if not with_vectors:
            docs = [without_arrays(d) for d in docs]
        return sorted(docs, key=lambda d: (d.get("per_gender", 0), d["_id"]))

    def delete_centroids(self, cid: str) -> bool:
        """Delete one centroid set; return whether it existed."""
        self._writable()
        res = self._call(lambda: self.centroids.delete_one({"_id": cid}))
        return res.deleted_count > 0

    def centroids_version(self) -> tuple:
        """A fingerprint of the stored sets that changes with every write of any of them.

        Made of each set's id, ``created_at`` and ``revision`` alone, never its arrays: MongoDB
        sends only these fields. (montydb decodes every whole document of a query all the same:
        this costs about as much as reading the sets, but sends nothing more to compare.) A
        document written without a ``revision`` (by a release before it) counts by ``created_at``.
        """
        fields = {"_id": 1, "created_at": 1, "revision": 1}
        docs = self._call(lambda: list(self.centroids.find({}, fields)))
        stamps = (
            (d["_id"], str(d.get("created_at", "")), str(d.get("revision", ""))) for d in docs
        )
        return tuple(sorted(stamps))

    # -- embeddings -----------------------------------------------------------------------------

    def put_embeddings(self, docs: Iterable[dict[str, Any]]) -> int:
        """Store one-face entries (``Embedded.to_doc``) as chunk documents, in one unordered batch.

        A chunk already stored (the same faces written again) is kept, not doubled. Returns how
        many faces the written chunks hold. See :mod:`centroids.embedding_chunks`.
        """
        chunks = embedding_chunks.chunk_documents(docs)
        if not chunks:
            return 0
        self._writable()

        def write() -> int:
            if self.kind == "mongodb" and not self._indexed:
                # one face by its image hash (find_embedding); montydb has no indexes
                self.embeddings.create_index([("hashes", 1), ("settings", 1)])
                self._indexed = True
            try:
                self.embeddings.insert_many(chunks, ordered=False)
                return sum(c["count"] for c in chunks)
            except Exception as exc:  # a chunk stored already: keep it, write the others
                if not _is_duplicate(exc):
                    raise
                written = 0
                for c in chunks:
                    try:
                        self.embeddings.insert_one(c)
                        written += c["count"]
                    except Exception as inner:
                        if not _is_duplicate(inner):
                            raise
                return written

        return self._call(write)

    def load_embeddings(self, settings_key: str) -> CachedFaces:
        """Every cached face made with ``settings_key``, each once, read in one query that returns
        only what a build needs, straight into one float32 matrix (:class:`CachedFaces`)."""

        def load() -> CachedFaces:
            cursor = self.embeddings.find({"settings": settings_key}, embedding_chunks.LOAD_FIELDS)
            try:
                return embedding_chunks.load(cursor)
            finally:
                cursor.close()  # montydb's cursor holds every decoded document until closed

        faces = self._call(load)
        embedding_chunks.release_freed_memory(collect=self.kind == "montydb")
        return faces

    def cached_embeddings(self, settings_key: str) -> dict[str, dict[str, Any]]:
        """Every cached face made with ``settings_key`` as a one-face record
        (:func:`centroids.embedding_chunks.records`), by image sha256: for looking at the cache
        (a build reads :meth:`load_embeddings`)."""
        docs = self._call(lambda: list(self.embeddings.find({"settings": settings_key})))
        return {r["_id"].split(":", 1)[0]: r for r in embedding_chunks.records(docs)}

    def find_embedding(self, sha256: str, settings_key: str) -> dict[str, Any] | None:
        """One cached face by its image hash, as a record of :meth:`cached_embeddings`, or None.

        On MongoDB the index on ``hashes`` answers it; montydb scans (as for any query).
        """

        def find() -> dict[str, Any] | None:
            doc = self.embeddings.find_one({"settings": settings_key, "hashes": sha256})
            if doc is None:  # written by an earlier version, one document per face
                doc = self.embeddings.find_one({"_id": embedding_id(sha256, settings_key)})
            if doc is None:
                return None
            return next(r for r in embedding_chunks.records([doc]) if r["_id"].startswith(sha256))

        return self._call(find)

    def count_embeddings(self) -> int:
        """How many faces the cache holds, over every setting (each face once)."""

        def count() -> int:
            seen: set[tuple[str, str]] = set()
            for doc in self.embeddings.find({}, {"settings": 1, "hashes": 1}):
                key = doc.get("settings", "")
                if "hashes" in doc:
                    seen.update((key, sha) for sha in doc["hashes"])
                else:
                    seen.add((key, doc["_id"].split(":", 1)[0]))
            return len(seen)

        return self._call(count)

    # -- migration ------------------------------------------------------------------------------

    def migrate(self, log: Callable[[str], None] = lambda _line: None) -> dict[str, int]:
        """Rewrite documents of earlier versions compactly; return how many of each were rewritten.

        Centroid sets: each set is replaced, in one write, by the same document with its vectors
        packed (:func:`compact_centroids`). Cached faces: the one-face documents are written again
        as chunks, and only once every one of them is in a chunk are they deleted (one query).
        An interruption at any point loses nothing: every face is in its old document, its
        chunk, or both (read once), and a rerun carries on. Run it while no build of an earlier
        version writes to this database.
        """
        self._writable()
        sets = 0
        for doc in self._call(lambda: list(self.centroids.find({}))):
            if not is_compact(doc):
                self.put_centroids(doc)
                sets += 1
        log(f"centroid sets rewritten: {sets}")
        chunked: set[tuple[str, str]] = set()
        for doc in self._call(
            lambda: list(
                self.embeddings.find({"hashes": {"$exists": True}}, {"settings": 1, "hashes": 1})
            )
        ):
            chunked.update((doc["settings"], sha) for sha in doc["hashes"])
        pending: list[dict[str, Any]] = []
        settings: set[str] = set()
        faces = 0
        old = self._call(lambda: self.embeddings.find({"hashes": {"$exists": False}}))
        for doc in old:
            settings.add(doc["settings"])
            if (doc["settings"], doc["_id"].split(":", 1)[0]) in chunked:
                continue
            pending.append(doc)
            if len(pending) >= MIGRATE_BATCH:
                faces += self.put_embeddings(pending)
                pending = []
                log(f"cached faces rewritten as chunks: {faces}")
        faces += self.put_embeddings(pending)
        if settings:
            gone = self._call(
                lambda: (
                    self.embeddings.delete_many(
                        {"hashes": {"$exists": False}, "settings": {"$in": sorted(settings)}}
                    ).deleted_count
                )
            )
            log(f"cached faces rewritten as chunks: {faces}; one-face documents removed: {gone}")
        return {"centroid_sets": sets, "faces": faces}


# The vector fields of a centroid document, as paths of keys; those marked "rows" are matrices of
# 128-d rows (stored flat). ``children.reference`` is a centroid document of its own (its
# ``vectors``, ``prototypes`` and ``whitening``).
_SET_ARRAYS = (
    ("vectors", "female"),
    ("vectors", "male"),
    ("prototypes", "female"),
    ("prototypes", "male"),
    ("whitening",),
)
CENTROID_ARRAYS = (
    *_SET_ARRAYS,
    ("age", "mean"),
    ("age", "weights"),
    ("children", "router", "weights"),
    *(("children", "reference", *path) for path in _SET_ARRAYS),
)


def compact_centroids(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` with every vector of :data:`CENTROID_ARRAYS` as a float32 BSON vector
    (:func:`centroids.vectors.pack`): lists of floats packed, montydb's bytes of a packed vector
    given back their BSON subtype. The dicts on those paths are copied; ``doc`` is not changed."""
    out = doc
    for path in CENTROID_ARRAYS:
        value = _get(out, path)
        if value is None or isinstance(value, Binary):
            continue
        out = _copy_path(out, path)
        if vectors.is_packed(value):
            _set(out, path, Binary(value, vectors.VECTOR_SUBTYPE))
        else:
            _set(out, path, vectors.pack(vectors.unpack(value, np.float32)))
    return out


def expand_centroids(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` with every vector of :data:`CENTROID_ARRAYS` as a list of floats (a
    matrix as a list of 128-d rows), as earlier versions stored it: for JSON, which has no
    binary. ``doc`` is not changed."""
    out = doc
    for path in CENTROID_ARRAYS:
        value = _get(out, path)
        if value is None or not vectors.is_packed(value):
            continue
        out = _copy_path(out, path)
        _set(
            out,
            path,
            vectors.unpack(value, columns=128 if _is_matrix(doc, path) else None).tolist(),
        )
    return out


def _is_matrix(doc: dict[str, Any], path: tuple[str, ...]) -> bool:
    """Whether the array at ``path`` of a centroid document is a matrix of 128-d rows (one row
    stays a matrix): prototypes, whitening, a router's weights, the ``bins`` age model's weights."""
    return (
        path[-2:] == ("router", "weights")
        or path[-1] == "whitening"
        or "prototypes" in path
        or (path == ("age", "weights") and _get(doc, ("age", "method")) == "bins")
    )


def is_compact(doc: dict[str, Any]) -> bool:
    """Whether every vector of the centroid document ``doc`` is packed (none is a list)."""
    return all(
        value is None or vectors.is_packed(value)
        for value in (_get(doc, path) for path in CENTROID_ARRAYS)
    )


def _get(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _copy_path(doc: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``doc`` sharing everything but the dicts along ``path``."""
    out = dict(doc)
    node = out
    for key in path[:-1]:
        node[key] = dict(node[key])
        node = node[key]
    return out


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def without_arrays(doc: dict[str, Any]) -> dict[str, Any]:
    """A centroid document without its arrays (vectors, whitening, the age model's weights...),
    ready for JSON: what remains of them (the children's router) as lists, as always listed."""
    out = {k: v for k, v in doc.items() if k not in ("vectors", "prototypes", "whitening")}
    for key, arrays in (("age", ("mean", "weights")), ("children", ("reference",))):
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k not in arrays}
    return expand_centroids(out)


def centroid_revision(doc: dict[str, Any]) -> str:
    """SHA-256 (hex) of a centroid document's fields but ``revision``, as JSON with sorted keys.

    Taken of the stored form (vectors packed as float32, :func:`compact_centroids`) and equal for
    equal content whatever the key order, so writing a set again unchanged keeps its revision; any changed field (a vector, the age model, ``created_at``) changes it.
    """
    content = compact_centroids({k: v for k, v in doc.items() if k != "revision"})
    text = orjson.dumps(content, option=orjson.OPT_SORT_KEYS, default=_stamp_form)
    return hashlib.sha256(text).hexdigest()


def _stamp_form(value: Any) -> str:
    """How :func:`centroid_revision` writes what JSON has no form for: bytes (a packed vector)
    in hex, anything else by ``str``."""
    return value.hex() if isinstance(value, bytes) else str(value)


def embedding_id(sha256: str, settings_key: str) -> str:
    return f"{sha256}:{settings_key}"


def _monty_path(uri: str) -> Path:
    if uri.startswith("montydb://"):
        rest = uri[len("montydb://") :]
        if not rest.startswith("/"):
            raise InvalidParameter("montydb URIs name an absolute path: montydb:///path/to/db")
        return Path(rest)
    return Path(uri).expanduser()


def _open_monty(uri: str):
    """A montydb client on the folder, its storage and both collections created once.

    Creating them is done under an exclusive lock on ``<folder>/.anfe.lock``, because montydb
    creates a collection's sqlite file and its table in two steps: two processes opening a fresh
    database at once (a build and the service) would otherwise race, and a reader could meet a
    file without its table.
    """
    import fcntl

    from montydb import MontyClient, set_storage

    path = _monty_path(uri).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".anfe-write-probe-{os.getpid()}-{threading.get_ident()}"
        try:
            probe.write_text("ok")
        except OSError as exc:
            if (
                exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
                and (path / "monty.storage.cfg").is_file()
            ):
                raise ReadOnlyFolder() from None
            raise
        probe.unlink()
        for existing in path.glob(f"{DB_NAME}/*.collection"):
            with open(existing, "rb"):
                pass
        lock = open(path / ".anfe.lock", "a")  # noqa: SIM115 - held for the block below
    except OSError as exc:
        raise DatabaseUnavailable(
            f"database folder {path.name!r} is not usable: {exc.strerror}"
        ) from None
    with _MONTY_LOCK, lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "monty.storage.cfg").exists():
            set_storage(str(path), storage="sqlite")
        client = MontyClient(str(path))
        for name in ("centroids", "embeddings"):
            _create_collection(client, path / DB_NAME / f"{name}.collection", name)
    return client


class ReadOnlyFolder(Exception):
    """The embedded database exists but this process may not write its folder."""


class ReadOnlySnapshot:
    """A private copy of a read-only embedded database's storage files and centroid collection."""

    FILES = ("monty.storage.cfg", ".monty.storage")
    COLLECTION = f"{DB_NAME}/centroids.collection"

    def __init__(self, source: Path) -> None:
        self.source = source
        self.copy: Path | None = None
        self._signature: tuple | None = None

    def _current(self) -> tuple:
        out = []
        for name in (self.COLLECTION, self.COLLECTION + "-wal"):
            try:
                st = (self.source / name).stat()
                out.append((name, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                out.append((name, None, None))
        return tuple(out)

    def stale(self) -> bool:
        """Whether the folder's centroid collection changed since the copy was taken."""
        return self._current() != self._signature

    def open(self):
        """Copy the files (again) and open montydb on the copy."""
        from montydb import MontyClient

        self.remove()
        self.copy = Path(tempfile.mkdtemp(prefix="anfe-readonly-db-"))
        (self.copy / DB_NAME).mkdir()
        signature = self._current()
        for name in (*self.FILES, self.COLLECTION, self.COLLECTION + "-wal"):
            if (self.source / name).is_file():
                shutil.copyfile(self.source / name, self.copy / name)
        self._signature = signature
        return MontyClient(str(self.copy))

    def remove(self) -> None:
        if self.copy is not None:
            shutil.rmtree(self.copy, ignore_errors=True)
            self.copy = None


def _create_collection(client, file: Path, name: str) -> None:
    """Make sure the collection's sqlite file holds its table (montydb makes it on first write)."""
    if file.is_file():
        with sqlite3.connect(file) as conn:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table'").fetchone():
                return
        file.unlink()  # a file left without its table holds no document
    collection = client[DB_NAME][name]
    collection.insert_one({"_id": "__anfe_create__"})
    collection.delete_one({"_id": "__anfe_create__"})
