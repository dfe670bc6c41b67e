"""The avatar store: every image the studio kept or `tfgen generate --unique` issued, in one database.

SQLite (the standard library's `sqlite3`, in WAL mode) is the embedded default: one file,
`avatars.db` in the run folder or wherever `--db PATH` says. PostgreSQL (`--db
postgresql://...`, `pip install "tfgen[postgres]"`) holds the same schema for several servers on
several machines. Both give the same guarantees:

- **Append-only.** A kept avatar is a row in `avatars`, numbered by `seq` in the order written;
  rows are never rewritten (a share link is the one field set later). A process keeps the
  features of a source's rows in memory (`uniqueness.KeptIndex`) and loads only the rows added
  since it last looked (`Writer.rows_since` / `Store.rows_since`), so a keep costs the same at
  a million avatars as at ten.
- **One writer per source at a time.** `Store.writing(source)` holds the database's write lock
  (SQLite `BEGIN IMMEDIATE`; a Postgres transaction-level advisory lock on the source) from the
  last check to the commit, so two processes, on one machine or on several, never both keep
  look-alikes.
- **Reported means durable.** A keep returns after its transaction commits (SQLite
  `synchronous=FULL`; Postgres commits are durable by default): a server killed at any moment
  loses no avatar it reported, and leaves none half-written.

A source is one generator: a run folder, or its export. Its avatars are filed under the
folder's name (`source_name`), so a run and its `saved_model/` share them, and so do copies of
one run on several machines; the `sources` table records the feature space they are measured
in, and a mismatch is refused rather than mixed.
"""

import contextlib
import hashlib
import secrets
import sqlite3
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

from tfgen import cli
from tfgen.errors import ConfigError, RunError

log = cli.log

STORE_NAME = "avatars.db"
LEDGER_NAME = "issued.npz"  # the store before this one: imported once, then left as it is
POSTGRES_PREFIXES = ("postgresql://", "postgres://")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    name TEXT PRIMARY KEY,
    feature_space TEXT NOT NULL,
    feature_dim INTEGER NOT NULL,
    noise_size INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS avatars (
    seq {seq},
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL REFERENCES sources (name),
    owner TEXT,
    label INTEGER NOT NULL,
    features {blob} NOT NULL,
    z {blob} NOT NULL,
    train_distance DOUBLE PRECISION NOT NULL,
    seed BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    share TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS avatars_by_source ON avatars (source, seq);
CREATE INDEX IF NOT EXISTS avatars_by_owner ON avatars (owner, seq);
CREATE TABLE IF NOT EXISTS imports (
    digest TEXT NOT NULL,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    rows INTEGER NOT NULL,
    imported_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (digest, source)
);
"""
DIALECTS = {
    "sqlite": {"seq": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB"},
    "postgres": {"seq": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA"},
}
AVATAR_FIELDS = "id, source, owner, label, z, train_distance, seed, created_at, share"
LEDGER_COLUMNS = ("features", "z", "labels", "train_distance", "seeds", "issued_at")  # issued.npz's
FETCH_ROWS = 20_000  # rows a cursor hands over at a time when a process loads a source's features


def source_name(folder):
    """The name a model's avatars are filed under: its folder's name; an export's `saved_model`
    folder inside a run counts as the run (`runs/anime/saved_model` -> "anime")."""
    folder = Path(folder).resolve()
    return folder.parent.name if folder.name == "saved_model" else folder.name


def default_location(folder):
    """Where a model's store is without --db: `avatars.db` in its run folder (for a run's
    `saved_model/`, the run folder)."""
    folder = Path(folder).resolve()
    return (folder.parent if folder.name == "saved_model" else folder) / STORE_NAME


def new_id():
    """An unguessable id (128 random bits as 32 hex digits, safe in URLs and file names):
    avatar ids, share tokens, owner tokens."""
    return secrets.token_hex(16)


def open_source(folder, db, feature_space, feature_dim, noise_size, stores=None):
    """(Store, source name) for the model in `folder`, ready to use: the store at `db` (a path or
    postgresql:// URL; None: `avatars.db` beside the model), the source registered, and an
    `issued.npz` ledger beside the model imported once. `stores` (location -> Store) lets
    models that share a database share one Store."""
    where = str(db) if db else str(default_location(folder))
    stores = {} if stores is None else stores
    if where not in stores:
        stores[where] = Store(where)
    store, source = stores[where], source_name(folder)
    store.register(source, feature_space, feature_dim, noise_size)
    ledger = default_location(folder).with_name(LEDGER_NAME)
    if ledger.is_file():
        imported = store.import_ledger(ledger, source, feature_space, feature_dim)
        if imported:
            log.info("imported %d avatars of %s from %s into %s", imported, source, ledger, where)
    return store, source


def owner_key(token):
    """What the store files an owner under: a hash of their cookie's token, so a copy of the
    database does not hand out the cookies that open it."""
    return hashlib.sha256(token.encode()).hexdigest()


def _lock_id(name):
    return int.from_bytes(hashlib.sha256(f"tfgen:{name}".encode()).digest()[:8], "big", signed=True)


def _blob(array):
    return np.ascontiguousarray(array, "<f4").tobytes()


def _array(blob):
    return np.frombuffer(bytes(blob), "<f4")


class Store:
    """One database of avatars; `Store.open(where)` for a file path or a postgresql:// URL.

    Thread-safe: each thread gets its own connection, and a process's writers queue on one
    lock before they ask the database for its write lock (so SQLite's busy-wait never sees two
    writers of one process).
    """

    def __init__(self, where):
        self.where = str(where)
        self.dialect = "postgres" if self.where.startswith(POSTGRES_PREFIXES) else "sqlite"
        self._local = threading.local()
        self._write_lock = threading.Lock()
        if self.dialect == "sqlite":
            path = Path(self.where)
            if not path.parent.is_dir():
                raise RunError(f"--db: {path.parent} is not a folder")
        else:
            try:
                import psycopg  # noqa: PLC0415, F401  (an optional extra)
            except ImportError:
                raise ConfigError(
                    f'--db {self.where}: PostgreSQL needs psycopg: pip install "tfgen[postgres]"'
                ) from None
        with self._transaction("schema"):
            schema = SCHEMA.format(**DIALECTS[self.dialect])
            for statement in filter(str.strip, schema.split(";")):
                self._execute(statement)

    def __repr__(self):
        return f"Store({self.where!r})"

    # -- connections ---------------------------------------------------------------------

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    def _connect(self):
        if self.dialect == "postgres":
            import psycopg  # noqa: PLC0415  (an optional extra)

            try:
                return psycopg.connect(self.where, autocommit=True)
            except psycopg.OperationalError as exc:
                reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                raise RunError(f"--db: cannot connect to the PostgreSQL server: {reason}") from None
        try:
            connection = sqlite3.connect(self.where, timeout=60, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise RunError(f"--db: cannot use {self.where} as an avatar store: {exc}") from None
        return connection

    def close(self):
        """Close this thread's connection (others close when their threads end)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _execute(self, sql, params=()):
        if self.dialect == "postgres":
            sql = sql.replace("?", "%s")
        return self._connection().execute(sql, params)

    @contextlib.contextmanager
    def _transaction(self, lock_name):
        """A write transaction holding the database's lock for `lock_name` until it ends."""
        with self._write_lock:
            connection = self._connection()
            if self.dialect == "postgres":
                with connection.transaction():
                    connection.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(lock_name),))
                    yield
                return
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    # -- sources and their rows ----------------------------------------------------------

    @contextlib.contextmanager
    def writing(self, source):
        """`with store.writing(source) as writer:` the source's write lock, one transaction
        committed when the block ends (rolled back if it raises)."""
        with self._transaction(source):
            yield Writer(self, source)

    def register(self, source, feature_space, feature_dim, noise_size):
        """Record a source's feature space, or check it against the one recorded: RunError
        naming both if they differ (distances in two spaces cannot be compared)."""
        with self.writing(source):
            row = self._execute(
                "SELECT feature_space, feature_dim, noise_size FROM sources WHERE name = ?", (source,)
            ).fetchone()
            if row is None:
                self._execute(
                    "INSERT INTO sources (name, feature_space, feature_dim, noise_size, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (source, feature_space, int(feature_dim), int(noise_size), time.time()),
                )
                return
        space, dim, noise = row
        if (space, dim) != (feature_space, feature_dim):
            raise RunError(
                f"--db {self.where}: the avatars of {source} are measured in {space} features ({dim}-d), "
                f"not {feature_space} ({feature_dim}-d); pass --features {space}, or another --db"
            )
        if noise != noise_size:
            raise RunError(
                f"--db {self.where}: the avatars of {source} come from a generator with {noise} noise "
                f"numbers, this one takes {noise_size}: another model filed under the same name? Rename "
                "its folder or pass another --db"
            )

    def rows_since(self, source, seq):
        """(seqs [n], features [n, d] float32) of the source's rows after `seq`, in order
        (features None when there are none)."""
        return _rows_since(self, source, seq)

    def reader(self, source):
        """What `uniqueness.KeptIndex.refresh` reads a source's new rows from, outside a write."""
        return Reader(self, source)

    def count(self, source):
        return self._execute("SELECT COUNT(*) FROM avatars WHERE source = ?", (source,)).fetchone()[0]

    # -- one avatar, one owner -----------------------------------------------------------

    def avatar(self, avatar_id):
        """The avatar with this id as a dict (z as a float32 array), or None."""
        row = self._execute(f"SELECT {AVATAR_FIELDS} FROM avatars WHERE id = ?", (avatar_id,)).fetchone()
        return _avatar(row)

    def shared(self, token):
        """The avatar a share link's token opens, or None."""
        row = self._execute(f"SELECT {AVATAR_FIELDS} FROM avatars WHERE share = ?", (token,)).fetchone()
        return _avatar(row)

    def owned(self, owner, limit=1000):
        """The owner's avatars, newest first (dicts without z)."""
        rows = self._execute(
            "SELECT id, source, label, created_at, share FROM avatars WHERE owner = ? ORDER BY seq DESC LIMIT ?",
            (owner, int(limit)),
        ).fetchall()
        return [dict(zip(("id", "source", "label", "created_at", "share"), row)) for row in rows]

    def share(self, avatar_id, owner):
        """The share token of the owner's avatar (made on first call), or None if it is not theirs."""
        with self._write_lock:
            self._execute(
                "UPDATE avatars SET share = COALESCE(share, ?) WHERE id = ? AND owner = ?", (new_id(), avatar_id, owner)
            )
        row = self._execute("SELECT share FROM avatars WHERE id = ? AND owner = ?", (avatar_id, owner)).fetchone()
        return None if row is None else row[0]

    # -- operators -----------------------------------------------------------------------

    def stats(self):
        """{source: {"kept": n, "owners": n, "shared": n}} for the operator's view."""
        rows = self._execute(
            "SELECT source, COUNT(*), COUNT(DISTINCT owner), COUNT(share) FROM avatars GROUP BY source"
        ).fetchall()
        return {source: {"kept": kept, "owners": owners, "shared": shared} for source, kept, owners, shared in rows}

    def export(self, source):
        """Every row of a source as issued.npz's columns plus ids and owners (an operator's backup)."""
        rows = self._execute(
            "SELECT id, owner, label, features, z, train_distance, seed, created_at FROM avatars "
            "WHERE source = ? ORDER BY seq",
            (source,),
        ).fetchall()
        ids, owners, labels, features, z, train_distance, seeds, times = zip(*rows) if rows else ([],) * 8
        return {
            "ids": np.array(ids, str),
            "owners": np.array([owner or "" for owner in owners], str),
            "labels": np.array(labels, np.int32),
            "features": np.stack([_array(f) for f in features]) if rows else np.zeros((0, 0), np.float32),
            "z": np.stack([_array(v) for v in z]) if rows else np.zeros((0, 0), np.float32),
            "train_distance": np.array(train_distance, np.float32),
            "seeds": np.array(seeds, np.int64),
            "issued_at": np.array(times, np.float64),
        }

    def import_ledger(self, path, source, feature_space, feature_dim):
        """Copy an `issued.npz` ledger (the store before this one) into the source, once:
        the number of rows imported, 0 if this file was imported before. Its avatars have no
        owner (the ledger did not know them); every row keeps its features, z, label,
        distance, seed and time, in the ledger's order."""
        path = Path(path)
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        with self.writing(source) as writer:
            done = self._execute("SELECT 1 FROM imports WHERE digest = ? AND source = ?", (digest, source)).fetchone()
            if done:
                return 0
            try:
                with np.load(path, allow_pickle=False) as stored:
                    space = str(stored["feature_space"])
                    entries = {name: stored[name] for name in LEDGER_COLUMNS}
            except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise RunError(f"{path}: cannot import this ledger ({type(exc).__name__}: {exc})") from None
            if space != feature_space or entries["features"].shape[1] != feature_dim:
                raise RunError(
                    f"{path}: holds {space} features ({entries['features'].shape[1]}-d), this studio measures "
                    f"{feature_space} ({feature_dim}-d); pass --features {space}"
                )
            writer.insert(
                [
                    {
                        "owner": None,
                        "label": int(entries["labels"][i]),
                        "features": entries["features"][i],
                        "z": entries["z"][i],
                        "train_distance": float(entries["train_distance"][i]),
                        "seed": int(entries["seeds"][i]),
                        "created_at": float(entries["issued_at"][i]),
                    }
                    for i in range(len(entries["z"]))
                ]
            )
            self._execute(
                "INSERT INTO imports (digest, source, path, rows, imported_at) VALUES (?, ?, ?, ?, ?)",
                (digest, source, str(path), len(entries["z"]), time.time()),
            )
        return len(entries["z"])


class Reader:
    """One source's rows of a store, as `KeptIndex.refresh` reads them."""

    def __init__(self, store, source):
        self.store = store
        self.source = source

    def rows_since(self, seq):
        """The source's rows after `seq` (in a Writer: all of them, as no one can add one meanwhile)."""
        return _rows_since(self.store, self.source, seq)


class Writer(Reader):
    """What a `Store.writing` block can do while it holds the source's write lock."""

    def insert(self, rows):
        """Append rows (dicts: owner, label, features, z, train_distance, seed, optional
        created_at); their ids, in order. Visible to others once the block commits."""
        ids = [new_id() for _ in rows]
        now = time.time()
        params = [
            (
                avatar_id,
                self.source,
                row["owner"],
                int(row["label"]),
                _blob(row["features"]),
                _blob(row["z"]),
                float(row["train_distance"]),
                int(row["seed"]),
                float(row.get("created_at") or now),
            )
            for avatar_id, row in zip(ids, rows)
        ]
        sql = (
            "INSERT INTO avatars (id, source, owner, label, features, z, train_distance, seed, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        if self.store.dialect == "postgres":
            with self.store._connection().cursor() as cursor:
                cursor.executemany(sql.replace("?", "%s"), params)
        else:
            self.store._connection().executemany(sql, params)
        return ids


def _rows_since(store, source, seq):
    cursor = store._execute(
        "SELECT seq, features FROM avatars WHERE source = ? AND seq > ? ORDER BY seq", (source, int(seq))
    )
    seqs, blobs = [], []
    while chunk := cursor.fetchmany(FETCH_ROWS):
        seqs.extend(row[0] for row in chunk)
        blobs.extend(bytes(row[1]) for row in chunk)
    if not blobs:
        return np.zeros(0, np.int64), None
    features = np.frombuffer(b"".join(blobs), "<f4").reshape(len(blobs), -1)
    return np.array(seqs, np.int64), features


def _avatar(row):
    if row is None:
        return None
    avatar = dict(zip(("id", "source", "owner", "label", "z", "train_distance", "seed", "created_at", "share"), row))
    avatar["z"] = _array(avatar["z"])
    return avatar
