"""The avatar studio: its API in-process (owners, share links, fair use, the admin token),
concurrent keeps over loopback, two servers on one store (one of them killed), the page in a
real headless Chromium."""

import asyncio
import concurrent.futures
import dataclasses
import importlib.util
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason='the studio needs its extra: pip install -e ".[serve]"')
import httpx2  # noqa: E402
import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from tfgen import sampling, serve, store, uniqueness  # noqa: E402

MIN_DISTANCE = 0.1
ADMIN_TOKEN = "operator-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def stand_in_sampler(class_names=(), latent_dim=4):
    """A generator whose images clearly differ for different z (the toy GAN's are all grey)."""
    weights = np.random.default_rng(42).standard_normal((latent_dim + 1, 64)).astype(np.float32)

    def fn(z, labels):
        shift = np.zeros((len(z), 1), np.float32) if labels is None else labels[:, None].astype(np.float32)
        return np.tanh(np.concatenate([z, shift], axis=1) @ weights).reshape(-1, 8, 8, 1)

    return sampling.Sampler(fn, latent_dim, (8, 8, 1), class_names, "stand-in")


def stand_in_source(folder, key="pets", class_names=("cat", "dog"), train_count=32, db=None):
    """A Source over the stand-in generator, kept in folder/avatars.db (or `db`); its 'training
    images' are a few of its own samples."""
    sampler = stand_in_sampler(class_names)
    space = uniqueness.FeatureSpace("pixels")
    z = sampler.noise(np.random.default_rng(1), train_count)
    labels = sampling.labels_for(sampler, train_count, None)
    train_features = space.features(sampler.images(z, labels))
    avatar_store = store.Store(db or folder / store.STORE_NAME)
    avatar_store.register(key, space.name, train_features.shape[1], sampler.noise_size)
    return serve.Source(key, sampler, space, train_features, avatar_store, key)


@pytest.fixture
def studio(tmp_path):
    return serve.Studio([stand_in_source(tmp_path)], MIN_DISTANCE)


@pytest.fixture
def client(studio):
    with TestClient(serve.create_app(studio, ADMIN_TOKEN)) as test_client:
        yield test_client


@pytest.fixture
def stranger(studio):
    """A second visitor: another cookie jar on the same app."""
    with TestClient(serve.create_app(studio, ADMIN_TOKEN)) as test_client:
        yield test_client


def png_image(response):
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def stored(path, source="pets"):
    """Every row the store at `path` holds for `source`, as read by a fresh connection."""
    return store.Store(path).export(source)


def test_themes_list_one_theme_per_class_with_an_example(client):
    assert client.get("/api/health").json() == {"status": "ok", "themes": 2}
    themes = client.get("/api/themes").json()["themes"]
    assert [(t["id"], t["title"], t["group"], t["label"]) for t in themes] == [
        ("pets-cat", "cat", "pets", 0),
        ("pets-dog", "dog", "pets", 1),
    ]
    assert themes[0]["capacity"] == {"kept": 0, "left": None, "bound": "unknown"}
    cat, dog = (np.asarray(png_image(client.get(t["example_url"]))) for t in themes)
    assert cat.shape == (8, 8) and not np.array_equal(cat, dog)


def test_the_first_response_sets_an_http_only_owner_cookie(client):
    response = client.get("/api/health")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{serve.OWNER_COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http on loopback; set when served over https
    assert "set-cookie" not in client.get("/api/health").headers  # kept, not renewed


def test_generate_rerolls_and_keep_commits_before_answering(client, studio, tmp_path):
    first = client.post("/api/candidates", json={"theme": "pets-dog"}).json()
    second = client.post("/api/candidates", json={"theme": "pets-dog"}).json()
    assert first["id"] != second["id"] and first["train_distance"] > MIN_DISTANCE
    a, b = (np.asarray(png_image(client.get(c["image_url"]))) for c in (first, second))
    assert a.shape == (8, 8) and not np.array_equal(a, b)
    assert len(stored(tmp_path / "avatars.db")["ids"]) == 0  # candidates are not claimed

    kept = client.post("/api/keep", json={"candidate": second["id"]})
    assert kept.status_code == 200, kept.text
    avatar = kept.json()["avatar"]
    rows = stored(tmp_path / "avatars.db")  # committed once the answer is given
    assert rows["ids"].tolist() == [avatar] and rows["labels"].tolist() == [1]
    np.testing.assert_array_equal(rows["z"][0], studio.candidates[second["id"]].z)
    assert rows["owners"][0] == store.owner_key(client.cookies[serve.OWNER_COOKIE])

    native = np.asarray(png_image(client.get(kept.json()["image_url"])))
    np.testing.assert_array_equal(native, b)  # regenerated from the stored noise
    big = png_image(client.get(kept.json()["image_url"], params={"size": 64, "resample": "nearest"}))
    assert big.size == (64, 64)
    np.testing.assert_array_equal(np.asarray(big)[::8, ::8], b)
    smooth = png_image(client.get(kept.json()["image_url"], params={"size": 64, "resample": "smooth"}))
    assert not np.array_equal(np.asarray(smooth), np.asarray(big))

    again = client.post("/api/keep", json={"candidate": second["id"]})
    assert again.status_code == 409 and avatar in again.json()["error"]
    assert len(stored(tmp_path / "avatars.db")["ids"]) == 1


def test_avatars_are_their_owners_alone(client, stranger, tmp_path):
    candidate = client.post("/api/candidates", json={"theme": "pets-cat"}).json()
    assert stranger.get(candidate["image_url"]).status_code == 404  # not even its candidate
    assert stranger.post("/api/keep", json={"candidate": candidate["id"]}).status_code == 404
    kept = client.post("/api/keep", json={"candidate": candidate["id"]}).json()
    mine = client.get("/api/me/avatars").json()["avatars"]
    assert [(a["avatar"], a["theme"], a["title"]) for a in mine] == [(kept["avatar"], "pets-cat", "cat")]
    assert stranger.get("/api/me/avatars").json() == {"avatars": []}
    for who in (stranger, TestClient(client.app)):  # another visitor, and a client with no cookie
        response = who.get(kept["image_url"])
        assert response.status_code == 404 and response.json()["error"] == f"unknown avatar {kept['avatar']!r}"
        assert who.post(f"/api/avatars/{kept['avatar']}/share").status_code == 404
    # an id is 128 random bits: counting or guessing finds nothing
    assert len(kept["avatar"]) == 32 and client.get("/api/avatars/0.png").status_code == 404


def test_a_share_link_opens_one_avatar_to_anyone(client, stranger):
    kept = []
    for _ in range(2):
        candidate = client.post("/api/candidates", json={"theme": "pets-dog"}).json()
        kept.append(client.post("/api/keep", json={"candidate": candidate["id"]}).json())
    link = client.post(f"/api/avatars/{kept[0]['avatar']}/share").json()["share_url"]
    assert client.post(f"/api/avatars/{kept[0]['avatar']}/share").json()["share_url"] == link  # one link
    own = np.asarray(png_image(client.get(kept[0]["image_url"])))
    np.testing.assert_array_equal(np.asarray(png_image(stranger.get(link))), own)
    assert png_image(stranger.get(link, params={"size": 32})).size == (32, 32)
    assert stranger.get(kept[1]["image_url"]).status_code == 404  # the link opens that one only
    listed = {a["avatar"]: a["share_url"] for a in client.get("/api/me/avatars").json()["avatars"]}
    assert listed == {kept[0]["avatar"]: link, kept[1]["avatar"]: None}
    assert stranger.get("/api/shared/" + "0" * 32 + ".png").status_code == 404


def test_a_look_alike_kept_first_is_refused(client, studio):
    first = client.post("/api/candidates", json={"theme": "pets-cat"}).json()
    # A second candidate drawn before the first was kept, with the same latent: a look-alike.
    studio.candidates["twin"] = dataclasses.replace(studio.candidates[first["id"]], id="twin")
    assert client.post("/api/keep", json={"candidate": first["id"]}).status_code == 200
    taken = client.post("/api/keep", json={"candidate": "twin"})
    assert taken.status_code == 409 and "kept a look-alike of this one" in taken.json()["error"]
    # and candidates drawn after the keep are screened against it
    fresh = client.post("/api/candidates", json={"theme": "pets-cat"}).json()
    kept = studio.sources["pets"].index.features.astype(np.float64)
    assert uniqueness.nearest(studio.candidates[fresh["id"]].features[None], kept)[0][0] > MIN_DISTANCE


@pytest.mark.parametrize(
    "method, path, body, status, message",
    [
        ("post", "/api/candidates", {"theme": "unicorns"}, 404, "unknown theme 'unicorns'; themes: pets-cat, pets-dog"),
        ("post", "/api/keep", {"candidate": "nope"}, 404, "unknown or expired candidate 'nope'"),
        ("get", "/api/avatars/pets.7.png", None, 404, "unknown avatar 'pets.7'"),
        ("get", "/api/avatars/../../etc/passwd.png", None, 404, "Not Found"),
        ("get", "/api/candidates/nope.png", None, 404, "unknown or expired candidate"),
        ("post", "/v1/models/unicorns:predict", {"instances": [[0, 0, 0, 0]]}, 404, "unknown theme"),
        ("post", "/v1/models/pets-cat:predict", {"instances": [[0, 0]]}, 400, "each z needs 4 numbers"),
        ("post", "/v1/models/pets-cat:predict", {"instances": [{"z": [0, 0, 0, 0], "label": 5}]}, 400, "label must be"),
        ("post", "/v1/models/pets-cat:predict", {"instances": []}, 400, "expected 1 to 256"),
        ("post", "/v1/models/pets-cat:predict", {"instances": [[0, 0, 0, 1e39]]}, 400, "finite number"),
        (
            "post",
            "/v1/models/pets-cat:predict",
            {"instances": [{"z": [0, 0, 0, 0], "label": True}]},
            400,
            "label must be",
        ),
        ("get", "/api/avatars/pets.\u00b2.png", None, 404, "unknown avatar"),
        ("get", "/api/admin/export/unicorns.npz", None, 404, "unknown theme group 'unicorns'"),
    ],
)
def test_bad_requests_get_a_clear_json_error(client, method, path, body, status, message):
    response = getattr(client, method)(path, headers=ADMIN, **({"json": body} if body is not None else {}))
    assert response.status_code == status
    assert message in (response.json().get("error") or response.json().get("detail"))
    assert client.get("/api/health").status_code == 200  # and the server keeps serving


def test_malformed_bodies_get_422_and_oversized_downloads_400(client):
    assert client.post("/api/candidates", json={"colour": "red"}).status_code == 422
    assert (
        client.post("/api/keep", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    )
    candidate = client.post("/api/candidates", json={"theme": "pets-cat"}).json()
    url = client.post("/api/keep", json={"candidate": candidate["id"]}).json()["image_url"]
    for size, status in ((5000, 400), (4, 400), (1024, 200)):
        response = client.get(url, params={"size": size})
        assert response.status_code == status, size
    assert "size: expected 8 to 1024 pixels, got 5000" in client.get(url, params={"size": 5000}).json()["error"]
    assert client.get(url, params={"resample": "bicubic"}).status_code == 422


def test_an_exhausted_theme_answers_409_in_words(tmp_path):
    studio = serve.Studio([stand_in_source(tmp_path)], min_distance=2.5, max_draws=16)  # distances are <= 2
    with TestClient(serve.create_app(studio)) as client:
        response = client.post("/api/candidates", json={"theme": "pets-cat"})
    assert response.status_code == 409
    assert response.json()["error"].startswith("The theme 'cat' has run out of new avatars: none of 16 fresh draws")


def test_predict_and_the_operator_views_need_the_admin_token(studio, tmp_path):
    z = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    body = {"instances": z.tolist()}
    with TestClient(serve.create_app(studio)) as open_app:  # no --admin-token-file: off
        off = open_app.post("/v1/models/pets-dog:predict", json=body)
        assert off.status_code == 404 and "--admin-token-file" in off.json()["error"]
        assert open_app.get("/api/admin/stats", headers=ADMIN).status_code == 404
    with TestClient(serve.create_app(studio, ADMIN_TOKEN)) as app:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}):
            refused = app.post("/v1/models/pets-dog:predict", json=body, headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert app.get("/api/admin/stats", headers=headers).status_code == 401
        response = app.post("/v1/models/pets-dog:predict", json=body, headers=ADMIN)
        sampler = studio.sources["pets"].sampler
        np.testing.assert_allclose(response.json()["predictions"], sampler.images(z, np.ones(3, np.int32)), atol=1e-6)
        as_cat = app.post(
            "/v1/models/pets-dog:predict", json={"instances": [{"z": z[0].tolist(), "label": 0}]}, headers=ADMIN
        )
        np.testing.assert_allclose(
            as_cat.json()["predictions"][0], sampler.images(z[:1], np.zeros(1, np.int32))[0], atol=1e-6
        )
        candidate = app.post("/api/candidates", json={"theme": "pets-dog"}).json()
        kept = app.post("/api/keep", json={"candidate": candidate["id"]}).json()["avatar"]
        stats = app.get("/api/admin/stats", headers=ADMIN).json()["sources"]["pets"]
        assert (stats["kept"], stats["owners"], stats["shared"]) == (1, 1, 0)
        export = app.get("/api/admin/export/pets.npz", headers=ADMIN)
        with np.load(io.BytesIO(export.content)) as columns:
            assert columns["ids"].tolist() == [kept] and str(columns["feature_space"]) == "pixels"


def test_fair_use_limits_answer_429_with_retry_after(tmp_path):
    fair = serve.FairUse(generate="3/minute", generate_per_address="5/minute", keep="1/hour", keep_per_address="off")
    studio = serve.Studio([stand_in_source(tmp_path)], MIN_DISTANCE, fair_use=fair)
    app = serve.create_app(studio)
    with TestClient(app) as alice, TestClient(app) as bob:
        ids = [alice.post("/api/candidates", json={"theme": "pets-cat"}).json()["id"] for _ in range(3)]
        over = alice.post("/api/candidates", json={"theme": "pets-cat"})
        assert over.status_code == 429 and 1 <= int(over.headers["retry-after"]) <= 60
        assert over.json()["error"].startswith("Too many new candidates: at most 3 a minute for you. Try again in")
        assert bob.post("/api/candidates", json={"theme": "pets-cat"}).status_code == 200  # 4 from the address
        assert bob.post("/api/candidates", json={"theme": "pets-cat"}).status_code == 200  # 5
        by_address = bob.post("/api/candidates", json={"theme": "pets-cat"})
        assert by_address.status_code == 429 and "from your network address" in by_address.json()["error"]
        assert alice.post("/api/keep", json={"candidate": ids[0]}).status_code == 200
        kept_again = alice.post("/api/keep", json={"candidate": ids[1]})
        assert (
            kept_again.status_code == 429 and "Too many keeps: at most 1 a hour for you" in kept_again.json()["error"]
        )
        assert 3500 <= int(kept_again.headers["retry-after"]) <= 3600
    assert len(stored(tmp_path / "avatars.db")["ids"]) == 1
    for text in ("10", "ten/hour", "5/fortnight", "0/hour"):
        with pytest.raises(serve.ConfigError, match=f"--keep-limit {text}: expected COUNT/PERIOD"):
            serve.FairUse(keep=text)


def test_capacity_is_estimated_from_the_recent_rejections():
    capacity = serve.Capacity(window=100)
    assert capacity.estimate(0)["left"] is None
    capacity.record([False] * 60)
    assert capacity.estimate(10) == {"kept": 10, "left": 190, "bound": "more than"}  # p < 3/60
    capacity.record([True] * 20 + [False] * 20)  # the window keeps the last 100: 20 of them too close
    assert capacity.estimate(10) == {"kept": 10, "left": 40, "bound": "about"}  # 10 * 0.8 / 0.2


def test_batcher_answers_concurrent_requests_in_fewer_model_calls():
    calls = []

    def fn(z, labels):
        calls.append(len(z))
        time.sleep(0.05)
        return z * 2

    batcher = serve.Batcher(fn, max_batch=64)

    async def many():
        return await asyncio.gather(*(batcher(np.full((2, 3), i, np.float32), None) for i in range(20)))

    results = asyncio.run(many())
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out, np.full((2, 3), 2 * i))
    assert sum(calls) == 40 and len(calls) < 20 and max(calls) <= 64


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(tmp_path):
    """The stand-in studio on a real uvicorn server over loopback, in a thread."""
    studio = serve.Studio([stand_in_source(tmp_path, key="pets", class_names=())], min_distance=0.3)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(serve.create_app(studio), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", studio, tmp_path / "avatars.db"
    server.should_exit = True
    thread.join(timeout=10)


def storm(url, theme, count):
    """`count` visitors each draw a candidate, then all keep at once (some twice at once):
    the replies and the cookies."""
    visitors = [httpx2.Client(base_url=url, timeout=120) for _ in range(count)]
    try:
        drawn = [(visitor, visitor.post("/api/candidates", json={"theme": theme})) for visitor in visitors]
        assert {reply.status_code for _, reply in drawn} <= {200, 409}  # 409: the theme is full for now
        jobs = [(visitor, reply.json()["id"]) for visitor, reply in drawn if reply.status_code == 200]
        jobs += jobs[:5]  # five candidates are kept twice at once
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            replies = list(pool.map(lambda job: job[0].post("/api/keep", json={"candidate": job[1]}), jobs))
    finally:
        for visitor in visitors:
            visitor.close()
    return replies


def test_concurrent_keeps_over_loopback_never_hand_out_look_alikes(live_server):
    url, studio, db = live_server
    replies = storm(url, "pets", 40)
    assert {r.status_code for r in replies} <= {200, 409}
    kept = [r.json()["avatar"] for r in replies if r.status_code == 200]
    rows = stored(db)
    assert sorted(kept) == sorted(set(kept)) == sorted(rows["ids"].tolist())
    # candidates were drawn before any keep, so at 0.3 some collide: both paths were exercised
    assert 0 < sum(r.status_code == 409 for r in replies[:40]) and len(kept) >= 10
    features = rows["features"].astype(np.float64)
    distances, _ = uniqueness.nearest(features, features, exclude=np.arange(len(features)))
    assert distances.min() > 0.3


def test_the_keep_storm_tool_checks_a_running_studio(live_server, capsys):
    url, _, db = live_server
    sys.path.insert(0, "tools")
    try:
        import keep_storm
    finally:
        sys.path.remove("tools")
    assert keep_storm.main(["--url", url, "--theme", "pets", "--num", "20", "--db", str(db), "--source", "pets"]) == 0
    out = capsys.readouterr().out
    assert "20 keeps:" in out and out.strip().endswith("OK")


# -- the command and a real trained run --------------------------------------------------------


@pytest.fixture(scope="module")
def cond_run(cond_toy_run):
    return cond_toy_run  # the session's (conftest)


def start_server(run, port, *extra):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfgen.serve",
            "--theme",
            f"digits={run}",
            "--port",
            str(port),
            "--features",
            "pixels",
            "--min-distance",
            "0.0001",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, f"http://127.0.0.1:{port}"


def wait_until_up(process, url):
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx2.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"tfgen.serve did not start:\n{process.communicate()[0]}")
        time.sleep(0.2)


def started(run, *extra):
    process, url = start_server(run, free_port(), *extra)
    wait_until_up(process, url)
    return process, url


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_two_servers_on_one_store_never_hand_out_look_alikes_and_a_killed_one_loses_nothing(
    cond_run, tmp_path, dialect, request
):
    """Two `tfgen serve` processes share one store (a SQLite file, or a PostgreSQL database).
    A visitor keeps a 7 through the first; a crowd keeps 3s through both at once (the toy
    GAN's pictures lie within about 0.002 of each other, so at --min-distance 0.0015
    look-alikes race across the two processes); then the first is killed with SIGKILL, and
    the second, which never drew the 7, gives the visitor the same picture from the store."""
    db = str(tmp_path / "shared.db") if dialect == "sqlite" else request.getfixturevalue("postgres_db")
    extra = ["--db", db, "--min-distance", "0.0015", "--keep-limit-per-address", "off"]
    servers = [start_server(cond_run, free_port(), *extra) for _ in range(2)]
    try:
        for process, url in servers:
            wait_until_up(process, url)
        visitor = httpx2.Client(base_url=servers[0][1], timeout=60)
        themes = visitor.get("/api/themes").json()["themes"]
        assert [t["id"] for t in themes] == [f"digits-{k}" for k in range(10)]
        candidate = visitor.post("/api/candidates", json={"theme": "digits-7"}).json()
        before = np.asarray(png_image(visitor.get(candidate["image_url"])))
        seven = visitor.post("/api/keep", json={"candidate": candidate["id"]}).json()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            replies = sum(pool.map(lambda server: storm(server[1], "digits-3", 12), servers), [])
        servers[0][0].send_signal(signal.SIGKILL)
        servers[0][0].wait()
        later = httpx2.Client(base_url=servers[1][1], timeout=60, cookies=visitor.cookies)  # the same browser
        after = np.asarray(png_image(later.get(seven["image_url"])))
        assert [a["avatar"] for a in later.get("/api/me/avatars").json()["avatars"]] == [seven["avatar"]]
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait()
    np.testing.assert_array_equal(after, before)
    assert {r.status_code for r in replies} <= {200, 409}, [r.text for r in replies if r.status_code >= 500]
    kept = [r.json()["avatar"] for r in replies if r.status_code == 200]
    rows = stored(db, "cond_toy")
    assert sorted([seven["avatar"], *kept]) == sorted(rows["ids"].tolist()) and len(kept) >= 2
    assert sorted(rows["labels"].tolist()) == sorted([7] + [3] * len(kept))
    assert sum(r.status_code == 409 for r in replies) > 5  # look-alikes were refused, not kept
    features = rows["features"].astype(np.float64)
    distances, _ = uniqueness.nearest(features, features, exclude=np.arange(len(features)))
    assert distances.min() > 0.0015


def test_a_folder_that_cannot_be_loaded_fails_at_start_up_naming_it(tmp_path, capsys):
    assert serve.main(["--theme", f"anime={tmp_path / 'missing'}"]) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert error == (
        f"tfgen: error: --theme anime={tmp_path / 'missing'}: cannot be served: "
        f"{tmp_path / 'missing'} is not a run directory (no config.yaml)"
    )
    assert serve.main(["--theme", "no-equals-sign"]) == 2
    assert "expected NAME=PATH" in capsys.readouterr().err
    (tmp_path / "token").write_text("short\n")
    assert serve.main(["--theme", f"a={tmp_path}", "--admin-token-file", str(tmp_path / "token")]) == 2
    assert "expected one token of at least 16 characters" in capsys.readouterr().err


# -- the page in a real browser ---------------------------------------------------------------


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def chromium(downloads):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1000"):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
def test_the_page_in_headless_chromium(cond_run, tmp_path):
    pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    server, url = started(cond_run, "--db", str(tmp_path / "studio.db"))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = chromium(downloads)
    wait = WebDriverWait(browser, 60)
    other = None
    try:
        browser.get(f"{url}/")
        cards = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".card") or False)
        assert [c.text.split("\n")[0] for c in cards] == [str(k) for k in range(10)]
        wait.until(
            lambda b: all(
                b.execute_script("return arguments[0].naturalWidth", img) == 8
                for img in b.find_elements(By.CSS_SELECTOR, ".card img")
            )
        )
        cards[3].click()
        assert cards[3].get_attribute("aria-checked") == "true"

        generate = browser.find_element(By.ID, "generate")
        generate.click()
        wait.until(ec.element_to_be_clickable((By.ID, "keep")))
        first = browser.find_element(By.ID, "candidate").get_attribute("data-candidate")
        assert generate.text == "Re-roll"
        generate.click()
        wait.until(lambda b: b.find_element(By.ID, "candidate").get_attribute("data-candidate") != first)
        wait.until(ec.element_to_be_clickable((By.ID, "keep")))
        candidate = browser.find_element(By.ID, "candidate").get_attribute("data-candidate")

        browser.find_element(By.ID, "keep").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Kept as your avatar"))
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#gallery figure")) == 1)
        figure = browser.find_element(By.CSS_SELECTOR, "#gallery figure")
        assert figure.text.split("\n") == ["3", "Share"]
        avatar = figure.get_attribute("data-avatar")
        assert stored(tmp_path / "studio.db", "cond_toy")["ids"].tolist() == [avatar]

        Select(browser.find_element(By.ID, "size")).select_by_value("512")
        Select(browser.find_element(By.ID, "resample")).select_by_value("nearest")
        browser.save_screenshot(str(tmp_path / "studio.png"))
        browser.find_element(By.ID, "download-link").click()
        deadline = time.monotonic() + 30
        while not [p for p in downloads.glob("*.png")]:
            assert time.monotonic() < deadline, "the download did not arrive"
            time.sleep(0.2)
        (saved,) = downloads.glob("*.png")
        picture = Image.open(saved)
        assert picture.size == (512, 512)
        # the download is the candidate the page showed, upscaled (asked for with the browser's cookie)
        cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
        assert [c["httpOnly"] for c in browser.get_cookies() if c["name"] == serve.OWNER_COOKIE] == [True]
        shown = png_image(httpx2.get(f"{url}/api/candidates/{candidate}.png", cookies=cookies))
        np.testing.assert_array_equal(np.asarray(picture)[::64, ::64], np.asarray(shown))

        # the gallery comes from the server: after a reload, and in a new tab, it is still there
        browser.refresh()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#gallery figure")) == 1)
        browser.switch_to.new_window("tab")
        browser.get(f"{url}/")
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#gallery figure")) == 1)
        status = browser.execute_async_script(
            "fetch(arguments[0]).then(r => arguments[1](r.status))", f"/api/avatars/{avatar}.png"
        )
        assert status == 200

        browser.find_element(By.CSS_SELECTOR, "#gallery .share-button").click()
        wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#gallery input.share").get_attribute("value"))
        link = browser.find_element(By.CSS_SELECTOR, "#gallery input.share").get_attribute("value")

        # a second browser profile is someone else: none of it is theirs, but the share link opens
        other = chromium(tmp_path)
        other.get(f"{url}/")
        WebDriverWait(other, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".card") or False)
        WebDriverWait(other, 60).until(lambda b: not b.find_element(By.ID, "gallery-empty").get_attribute("hidden"))
        assert other.find_elements(By.CSS_SELECTOR, "#gallery figure") == []
        fetch = "fetch(arguments[0]).then(r => arguments[1](r.status))"
        assert other.execute_async_script(fetch, f"/api/avatars/{avatar}.png") == 404
        assert other.execute_async_script(fetch, link) == 200
        if os.environ.get("TFGEN_SCREENSHOT"):
            shutil.copy(tmp_path / "studio.png", os.environ["TFGEN_SCREENSHOT"])
    finally:
        browser.quit()
        if other is not None:
            other.quit()
        server.terminate()
        server.wait()


def test_an_export_and_a_run_serve_side_by_side(cond_run, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(cond_run / "saved_model", export)
    args = serve.parse_args(
        [
            "--theme",
            f"digits={cond_run}",
            "--theme",
            f"exported={export}",
            "--features",
            "pixels",
            "--min-distance",
            "0",
            "--db",
            str(tmp_path / "one.db"),
        ]
    )
    studio = serve.build_studio(args)
    assert len(studio.themes) == 20 and studio.themes["exported-5"].label == 5
    with TestClient(serve.create_app(studio)) as client:
        themes = {t["id"]: t for t in client.get("/api/themes").json()["themes"]}
        assert themes["digits-5"]["checks_training_set"] and not themes["exported-5"]["checks_training_set"]
        candidate = client.post("/api/candidates", json={"theme": "exported-5"}).json()
        kept = client.post("/api/keep", json={"candidate": candidate["id"]}).json()
        assert kept["title"] == "5" and client.get(kept["image_url"]).status_code == 200
    assert stored(tmp_path / "one.db", "export")["labels"].tolist() == [5]
    same = serve.parse_args(["--theme", f"a={cond_run}", "--theme", f"b={cond_run}"])
    with pytest.raises(serve.ConfigError, match=f"--theme b={cond_run}: the folder is already the theme a"):
        serve.build_studio(same)


def test_a_folder_is_one_theme_however_it_is_spelled(tmp_path, monkeypatch):
    """A folder given twice is refused before any model loads, naming the theme that has it,
    also when the second spelling differs (`runs/x/../x`); distinct folders each load once."""
    loaded = []
    monkeypatch.setattr(serve.Source, "load", classmethod(lambda cls, key, path, *args: loaded.append(key)))
    monkeypatch.setattr(serve, "Studio", lambda sources, *args: sources)
    (tmp_path / "x").mkdir()
    twice = serve.parse_args(["--theme", f"a={tmp_path / 'x'}", "--theme", f"b={tmp_path / 'x' / '..' / 'x'}"])
    with pytest.raises(serve.ConfigError, match=r"--theme b=.*: the folder is already the theme a"):
        serve.build_studio(twice)
    assert loaded == []
    serve.build_studio(serve.parse_args(["--theme", f"a={tmp_path / 'x'}", "--theme", f"b={tmp_path / 'y'}"]))
    assert loaded == ["a", "b"]


# -- the load-test tools -------------------------------------------------------------------------


def test_the_load_tool_drives_a_studio_and_verifies_every_keep(live_server, tmp_path):
    if importlib.util.find_spec("locust") is None:  # not imported here: it patches the standard library
        pytest.skip('the load test needs locust: pip install -e ".[load]"')
    url, _, db = live_server
    record = tmp_path / "kept.jsonl"
    run = [sys.executable, "tools/studio_load.py", "--url", url]
    load = subprocess.run(
        [*run, "--users", "4", "--seconds", "3", "--record", str(record), "--out", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert load.returncode == 0, load.stderr[-2000:]
    assert "POST /api/keep" in load.stdout and "requests/s" in load.stdout
    reported = record.read_text().splitlines()
    assert len(reported) >= 3 and len(stored(db)["ids"]) >= len(reported)
    verify = subprocess.run([*run, "--verify", str(record)], capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0 and f"{len(reported)} listed and downloadable" in verify.stdout
    record.write_text(record.read_text().replace('"avatar": "', '"avatar": "0'))  # ids nobody has
    assert subprocess.run([*run, "--verify", str(record)], capture_output=True, timeout=120).returncode == 1


def test_the_prefill_tool_fills_a_store_the_studio_then_screens_against(cond_run, tmp_path):
    db = tmp_path / "filled.db"
    result = subprocess.run(
        [sys.executable, "tools/studio_prefill.py", "--run", str(cond_run), "--count", "2500", "--db", str(db)]
        + ["--batch", "1000", "--measure", "5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cond_toy in" in result.stdout and "2,500 avatars kept (pixels features, 64-d)" in result.stdout
    assert "keep: p50" in result.stdout
    rows = stored(db, "cond_toy")
    assert len(rows["ids"]) >= 2500 and set(rows["labels"][:2500]) <= set(range(10))
    studio = serve.build_studio(serve.parse_args(["--theme", f"d={cond_run}", "--features", "pixels", "--db", str(db)]))
    assert len(studio.sources["d"].index) == len(rows["ids"])  # loaded at start-up
