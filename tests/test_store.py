"""The avatar store (SQLite and PostgreSQL) and the in-memory index of kept features: exact,
incremental, shared by processes, an old issued.npz imported once with nothing lost."""

import threading

import numpy as np
import pytest

from tfgen import store, uniqueness
from tfgen.errors import RunError


@pytest.fixture(params=["sqlite", "postgres"])
def avatar_store(request, tmp_path):
    """An empty Store: a SQLite file, or a fresh database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return store.Store(tmp_path / "avatars.db")
    return store.Store(request.getfixturevalue("postgres_db"))


def row(features, label=0, owner=None, z=(0.5, -0.5)):
    return {
        "owner": owner,
        "label": label,
        "features": np.asarray(features, np.float32),
        "z": np.asarray(z, np.float32),
        "train_distance": 1.0,
        "seed": 7,
    }


def test_rows_are_appended_in_order_and_loaded_only_once(avatar_store):
    avatar_store.register("pets", "pixels", 3, 2)
    index = uniqueness.KeptIndex(3)
    with avatar_store.writing("pets") as writer:
        ids = writer.insert([row([1, 0, 0], owner="a"), row([0, 1, 0], label=3, owner="b")])
    assert len(set(ids)) == 2 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len(index.refresh(avatar_store.reader("pets"))) == 2
    first_seq = index.seq
    seqs, features = avatar_store.rows_since("pets", first_seq)
    assert len(seqs) == 0 and features is None  # nothing new: nothing read
    with avatar_store.writing("pets") as writer:
        writer.insert([row([0, 0, 1])])
    seqs, features = avatar_store.rows_since("pets", first_seq)
    np.testing.assert_array_equal(features, [[0, 0, 1]])
    assert len(index.refresh(avatar_store.reader("pets"))) == 3 and index.seq == seqs[0] > first_seq
    mine = avatar_store.avatar(ids[1])
    assert (mine["owner"], mine["label"], mine["source"]) == ("b", 3, "pets")
    np.testing.assert_array_equal(mine["z"], np.float32([0.5, -0.5]))
    assert [a["id"] for a in avatar_store.owned("b")] == [ids[1]] and avatar_store.owned("nobody") == []


def test_a_failed_block_writes_nothing(avatar_store):
    avatar_store.register("pets", "pixels", 3, 2)
    with pytest.raises(ZeroDivisionError), avatar_store.writing("pets") as writer:
        writer.insert([row([1, 0, 0])])
        1 / 0  # noqa: B018
    assert avatar_store.count("pets") == 0
    with avatar_store.writing("pets") as writer:  # and the lock was released
        writer.insert([row([1, 0, 0])])
    assert avatar_store.count("pets") == 1


def test_share_links_are_made_once_and_only_by_the_owner(avatar_store):
    avatar_store.register("pets", "pixels", 3, 2)
    with avatar_store.writing("pets") as writer:
        (avatar_id,) = writer.insert([row([1, 0, 0], owner="alice")])
    assert avatar_store.share(avatar_id, "mallory") is None
    token = avatar_store.share(avatar_id, "alice")
    assert token and avatar_store.share(avatar_id, "alice") == token
    assert avatar_store.shared(token)["id"] == avatar_id and avatar_store.shared("0" * 32) is None
    assert avatar_store.stats() == {"pets": {"kept": 1, "owners": 1, "shared": 1}}


def test_a_source_measured_in_another_space_is_refused(avatar_store):
    avatar_store.register("pets", "pixels", 3, 2)
    avatar_store.register("pets", "pixels", 3, 2)  # the same again is fine
    with pytest.raises(RunError, match=r"measured in pixels features \(3-d\), not classifier \(128-d\)"):
        avatar_store.register("pets", "classifier", 128, 2)
    with pytest.raises(RunError, match="with 2 noise numbers, this one takes 5"):
        avatar_store.register("pets", "pixels", 3, 5)


def test_two_stores_on_one_database_never_keep_look_alikes(avatar_store):
    """Two Store objects (two connection pools, as two processes have) race to keep points of one
    tiny space; each keeps a point only if no kept point is within 0.25, checked under the lock."""
    other = store.Store(avatar_store.where)
    avatar_store.register("dots", "pixels", 2, 2)
    points = np.random.default_rng(0).uniform(0, 1, (120, 2)).astype(np.float32)
    kept_ids = []

    def keeper(db, rows):
        index = uniqueness.KeptIndex(2)
        for point in rows:
            with db.writing("dots") as writer:
                index.refresh(writer)
                if index.nearest(point[None], radius=0.25)[0] > 0.25:
                    kept_ids.extend(writer.insert([row(point)]))

    threads = [
        threading.Thread(target=keeper, args=(db, points[k::4])) for k, db in enumerate([avatar_store, other] * 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kept = avatar_store.rows_since("dots", 0)[1].astype(np.float64)
    assert len(kept) == len(kept_ids) >= 5
    distances, _ = uniqueness.nearest(kept, kept, exclude=np.arange(len(kept)))
    assert distances.min() > 0.25


def test_kept_index_is_exact_with_and_without_the_projection():
    """The projected pre-filter never misses a row within the radius: points planted just inside
    and just outside it, in 64-d, against a brute-force float64 scan."""
    rng = np.random.default_rng(1)
    dim, radius = 64, 0.1
    rows = rng.standard_normal((3000, dim)) / np.sqrt(dim)
    queries = rng.standard_normal((40, dim)) / np.sqrt(dim)
    directions = rng.standard_normal((40, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    offsets = np.where(np.arange(40) % 2 == 0, radius - 1e-4, radius + 1e-4)
    planted = queries + offsets[:, None] * directions  # half just inside, half just outside
    rows = np.concatenate([rows, planted]).astype(np.float32)

    class Reader:
        def rows_since(self, seq):
            return np.arange(seq + 1, len(rows) + 1), rows[seq:]

    index = uniqueness.KeptIndex(dim, reference=rows[:1000]).refresh(Reader())
    assert index.basis is not None and index.basis.shape == (dim, 16)
    np.testing.assert_allclose(index.basis.T @ index.basis, np.eye(16), atol=1e-5)
    truth = np.linalg.norm(rows.astype(np.float64)[None] - queries[:, None], axis=2).min(axis=1)
    np.testing.assert_allclose(index.nearest(queries), truth, rtol=0, atol=1e-9)
    within = index.nearest(queries, radius=radius)
    inside = truth <= radius
    assert inside.sum() >= 20  # the planted ones at least
    np.testing.assert_allclose(within[inside], truth[inside], atol=1e-9)
    assert np.isinf(within[~inside]).all()
    # `since`: only rows after a seq count (the planted rows are the last 40)
    recent = index.nearest(queries, radius=radius, since=3000)
    np.testing.assert_array_equal(np.isfinite(recent), np.arange(40) % 2 == 0)
    # stored in blocks (here of 1,000 rows), filled by refreshes of any size: the same answers
    blocked = uniqueness.KeptIndex(dim, reference=rows[:1000])
    blocked.BLOCK = 1000
    for end in (1, 700, 1000, 2999, 3040):
        blocked._append(np.arange(len(blocked) + 1, end + 1), rows[len(blocked) : end])
    assert len(blocked._snapshot[0]) == 4 and len(blocked) == 3040
    np.testing.assert_array_equal(blocked.features, rows)
    np.testing.assert_allclose(blocked.nearest(queries), truth, atol=1e-9)
    np.testing.assert_array_equal(blocked.nearest(queries, radius=radius), within)
    np.testing.assert_array_equal(blocked.nearest(queries, radius=radius, since=3000), recent)


def legacy_ledger(path, count, dim=4, latent=3):
    rng = np.random.default_rng(5)
    columns = {
        "features": rng.standard_normal((count, dim)).astype(np.float32),
        "z": rng.standard_normal((count, latent)).astype(np.float32),
        "labels": rng.integers(-1, 10, count).astype(np.int32),
        "train_distance": rng.uniform(0.2, 1, count).astype(np.float32),
        "seeds": rng.integers(0, 2**62, count),
        "issued_at": 1.7e9 + np.arange(count, dtype=np.float64),
    }
    np.savez(path, feature_space=np.array("pixels"), **columns)
    return columns


def test_an_old_ledger_is_imported_once_with_nothing_lost(tmp_path):
    run = tmp_path / "anime"
    run.mkdir()
    columns = legacy_ledger(run / store.LEDGER_NAME, 25)
    db, source = store.open_source(run, None, "pixels", 4, 3)
    assert (db.where, source) == (str(run / "avatars.db"), "anime")
    exported = db.export("anime")
    for name in store.LEDGER_COLUMNS:
        key = {"labels": "labels", "seeds": "seeds"}.get(name, name)
        np.testing.assert_array_equal(exported[key], columns[name], err_msg=name)
    assert (exported["owners"] == "").all()  # the ledger did not know owners
    again, _ = store.open_source(run, None, "pixels", 4, 3)  # a restart: not imported twice
    assert again.count("anime") == 25
    with pytest.raises(RunError, match="holds pixels features"):
        store.open_source(run, tmp_path / "other.db", "classifier", 128, 3)


def test_a_run_and_its_export_share_a_source_and_a_store(tmp_path):
    run = tmp_path / "runs" / "anime"
    (run / "saved_model").mkdir(parents=True)
    assert store.source_name(run) == store.source_name(run / "saved_model") == "anime"
    assert store.default_location(run / "saved_model") == run.resolve() / "avatars.db"


def test_stores_name_what_is_wrong(tmp_path):
    with pytest.raises(RunError, match=f"--db: {tmp_path / 'missing'} is not a folder"):
        store.Store(tmp_path / "missing" / "avatars.db")
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    with pytest.raises(RunError, match="cannot use .*junk.db as an avatar store"):
        store.Store(tmp_path / "junk.db")
