"""The avatar studio: its API in-process, concurrent keeps over loopback, a killed server, the page
in a real headless Chromium."""

import asyncio
import concurrent.futures
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

from tfgen import sampling, serve, uniqueness  # noqa: E402

MIN_DISTANCE = 0.1


def stand_in_sampler(class_names=(), latent_dim=4):
    """A generator whose images clearly differ for different z (the toy GAN's are all grey)."""
    weights = np.random.default_rng(42).standard_normal((latent_dim + 1, 64)).astype(np.float32)

    def fn(z, labels):
        shift = np.zeros((len(z), 1), np.float32) if labels is None else labels[:, None].astype(np.float32)
        return np.tanh(np.concatenate([z, shift], axis=1) @ weights).reshape(-1, 8, 8, 1)

    return sampling.Sampler(fn, latent_dim, (8, 8, 1), class_names, "stand-in")


def stand_in_source(folder, key="pets", class_names=("cat", "dog"), train_count=32):
    """A Source over the stand-in generator; its 'training images' are a few of its own samples."""
    sampler = stand_in_sampler(class_names)
    space = uniqueness.FeatureSpace("pixels")
    z = sampler.noise(np.random.default_rng(1), train_count)
    labels = sampling.labels_for(sampler, train_count, None)
    train_features = space.features(sampler.images(z, labels))
    return serve.Source(key, sampler, space, train_features, folder / uniqueness.LEDGER_NAME)


@pytest.fixture
def studio(tmp_path):
    return serve.Studio([stand_in_source(tmp_path)], MIN_DISTANCE)


@pytest.fixture
def client(studio):
    with TestClient(serve.create_app(studio)) as test_client:
        yield test_client


def png_image(response):
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def ledger_entries(path):
    with np.load(path) as stored:
        return {name: stored[name] for name in uniqueness.Ledger.COLUMNS}


def test_themes_list_one_theme_per_class_with_an_example(client):
    assert client.get("/api/health").json() == {"status": "ok", "themes": 2}
    themes = client.get("/api/themes").json()["themes"]
    assert [(t["id"], t["title"], t["group"], t["label"]) for t in themes] == [
        ("pets-cat", "cat", "pets", 0),
        ("pets-dog", "dog", "pets", 1),
    ]
    cat, dog = (np.asarray(png_image(client.get(t["example_url"]))) for t in themes)
    assert cat.shape == (8, 8) and not np.array_equal(cat, dog)


def test_generate_rerolls_and_keep_claims_on_disk(client, studio, tmp_path):
    first = client.post("/api/candidates", json={"theme": "pets-dog"}).json()
    second = client.post("/api/candidates", json={"theme": "pets-dog"}).json()
    assert first["id"] != second["id"] and first["train_distance"] > MIN_DISTANCE
    a, b = (np.asarray(png_image(client.get(c["image_url"]))) for c in (first, second))
    assert a.shape == (8, 8) and not np.array_equal(a, b)
    assert not (tmp_path / "issued.npz").exists()  # candidates are not claimed

    kept = client.post("/api/keep", json={"candidate": second["id"]})
    assert kept.status_code == 200, kept.text
    avatar = kept.json()["avatar"]
    entries = ledger_entries(tmp_path / "issued.npz")  # on disk once the answer is given
    assert len(entries["z"]) == 1 and entries["labels"][0] == 1
    np.testing.assert_array_equal(entries["z"][0], studio.candidate(second["id"]).z)

    native = np.asarray(png_image(client.get(kept.json()["image_url"])))
    np.testing.assert_array_equal(native, b)  # regenerated from the ledger's latent
    big = png_image(client.get(kept.json()["image_url"], params={"size": 64, "resample": "nearest"}))
    assert big.size == (64, 64)
    np.testing.assert_array_equal(np.asarray(big)[::8, ::8], b)
    smooth = png_image(client.get(kept.json()["image_url"], params={"size": 64, "resample": "smooth"}))
    assert not np.array_equal(np.asarray(smooth), np.asarray(big))

    again = client.post("/api/keep", json={"candidate": second["id"]})
    assert again.status_code == 409 and avatar in again.json()["error"]
    assert len(ledger_entries(tmp_path / "issued.npz")["z"]) == 1


def test_a_look_alike_kept_first_is_refused(client, studio):
    first = client.post("/api/candidates", json={"theme": "pets-cat"}).json()
    # A second candidate drawn before the first was kept, with the same latent: a look-alike.
    twin = serve.Candidate(
        "twin",
        studio.themes["pets-cat"],
        *(getattr(studio.candidate(first["id"]), f) for f in ("z", "features", "train_distance", "seed", "png")),
    )
    studio.candidates["twin"] = twin
    assert client.post("/api/keep", json={"candidate": first["id"]}).status_code == 200
    taken = client.post("/api/keep", json={"candidate": "twin"})
    assert taken.status_code == 409 and "kept a look-alike first" in taken.json()["error"]
    # and candidates drawn after the keep are screened against it
    fresh = client.post("/api/candidates", json={"theme": "pets-cat"}).json()
    assert (
        uniqueness.nearest(studio.candidate(fresh["id"]).features[None], studio.sources["pets"].kept["features"])[0][0]
        > MIN_DISTANCE
    )


@pytest.mark.parametrize(
    "method, path, body, status, message",
    [
        ("post", "/api/candidates", {"theme": "unicorns"}, 404, "unknown theme 'unicorns'; themes: pets-cat, pets-dog"),
        ("post", "/api/keep", {"candidate": "nope"}, 404, "unknown or expired candidate 'nope'"),
        ("get", "/api/avatars/pets.7.png", None, 404, "unknown avatar 'pets.7'"),
        ("get", "/api/avatars/zebras.0.png", None, 404, "unknown avatar"),
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
    ],
)
def test_bad_requests_get_a_clear_json_error(client, method, path, body, status, message):
    response = getattr(client, method)(path, **({"json": body} if body is not None else {}))
    assert response.status_code == status
    assert message in response.json()["error"]
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


def test_an_exhausted_theme_answers_409_with_a_reason(tmp_path):
    studio = serve.Studio([stand_in_source(tmp_path)], min_distance=2.5, max_draws=16)  # distances are <= 2
    with TestClient(serve.create_app(studio)) as client:
        response = client.post("/api/candidates", json={"theme": "pets-cat"})
    assert response.status_code == 409
    assert "theme 'pets-cat' is exhausted: none of 16 draws is farther than 2.5" in response.json()["error"]


def test_predict_follows_tf_serving_and_matches_the_generator(client, studio):
    z = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    response = client.post("/v1/models/pets-dog:predict", json={"instances": z.tolist()})
    predictions = np.array(response.json()["predictions"], np.float32)
    sampler = studio.sources["pets"].sampler
    np.testing.assert_allclose(predictions, sampler.images(z, np.ones(3, np.int32)), atol=1e-6)
    as_cat = client.post("/v1/models/pets-dog:predict", json={"instances": [{"z": z[0].tolist(), "label": 0}]})
    np.testing.assert_allclose(
        as_cat.json()["predictions"][0], sampler.images(z[:1], np.zeros(1, np.int32))[0], atol=1e-6
    )


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
    yield f"http://127.0.0.1:{port}", studio, tmp_path / "issued.npz"
    server.should_exit = True
    thread.join(timeout=10)


def test_concurrent_keeps_over_loopback_never_hand_out_look_alikes(live_server):
    url, studio, ledger = live_server
    with httpx2.Client(base_url=url, timeout=60) as http:
        ids = [http.post("/api/candidates", json={"theme": "pets"}).json()["id"] for _ in range(50)]
    requests = ids + ids[:10]  # ten candidates are kept twice at once

    def keep(candidate):
        with httpx2.Client(base_url=url, timeout=60) as http:
            return http.post("/api/keep", json={"candidate": candidate})

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(requests)) as pool:
        responses = list(pool.map(keep, requests))
    assert {r.status_code for r in responses} <= {200, 409}
    kept = [r.json()["avatar"] for r in responses if r.status_code == 200]
    entries = ledger_entries(ledger)
    assert len(kept) == len(set(kept)) == len(entries["z"]) <= 50
    # candidates were drawn before any keep, so at 0.3 some collide: both paths were exercised
    assert 0 < sum(r.status_code == 409 for r in responses[:50]) and len(kept) >= 10
    features = entries["features"].astype(np.float64)
    distances, _ = uniqueness.nearest(features, features, exclude=np.arange(len(features)))
    assert distances.min() > 0.3


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
            "0.001",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return process
        except httpx2.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"tfgen.serve did not start:\n{process.communicate()[0]}")
        time.sleep(0.2)


def test_a_killed_server_loses_no_kept_avatar(cond_run):
    port = free_port()
    server = start_server(cond_run, port)
    url = f"http://127.0.0.1:{port}"
    try:
        themes = httpx2.get(f"{url}/api/themes").json()["themes"]
        assert [t["id"] for t in themes] == [f"digits-{k}" for k in range(10)]
        candidate = httpx2.post(f"{url}/api/candidates", json={"theme": "digits-7"}).json()
        before = np.asarray(png_image(httpx2.get(url + candidate["image_url"])))
        kept = httpx2.post(f"{url}/api/keep", json={"candidate": candidate["id"]}).json()
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    assert ledger_entries(cond_run / "issued.npz")["labels"].tolist() == [7]
    server = start_server(cond_run, port)
    try:
        after = np.asarray(png_image(httpx2.get(url + kept["image_url"])))
    finally:
        server.terminate()
        server.wait()
    np.testing.assert_array_equal(after, before)


def test_a_folder_that_cannot_be_loaded_fails_at_start_up_naming_it(tmp_path, capsys):
    assert serve.main(["--theme", f"anime={tmp_path / 'missing'}"]) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert error == (
        f"tfgen: error: --theme anime={tmp_path / 'missing'}: cannot be served: "
        f"{tmp_path / 'missing'} is not a run directory (no config.yaml)"
    )
    assert serve.main(["--theme", "no-equals-sign"]) == 2
    assert "expected NAME=PATH" in capsys.readouterr().err


# -- the page in a real browser ---------------------------------------------------------------


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
def test_the_page_in_headless_chromium(cond_run, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    port = free_port()
    server = start_server(cond_run, port)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1000"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    wait = WebDriverWait(browser, 60)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
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
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Kept as avatar"))
        gallery = browser.find_elements(By.CSS_SELECTOR, "#gallery figure")
        assert len(gallery) == 1 and gallery[0].text == "3"
        assert ledger_entries(cond_run / "issued.npz")["labels"].tolist()[-1] == 3

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
        # the download is the candidate the page showed, upscaled
        shown = png_image(httpx2.get(f"http://127.0.0.1:{port}/api/candidates/{candidate}.png"))
        np.testing.assert_array_equal(np.asarray(picture)[::64, ::64], np.asarray(shown))

        browser.refresh()  # the gallery lives in this browser
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#gallery figure")) == 1)
        assert (tmp_path / "studio.png").stat().st_size > 0
        if os.environ.get("TFGEN_SCREENSHOT"):
            shutil.copy(tmp_path / "studio.png", os.environ["TFGEN_SCREENSHOT"])
    finally:
        browser.quit()
        server.terminate()
        server.wait()


def test_keep_storm_tool_checks_a_running_studio(live_server, capsys):
    url, _, ledger = live_server
    sys.path.insert(0, "tools")
    try:
        import keep_storm
    finally:
        sys.path.remove("tools")
    assert keep_storm.main(["--url", url, "--theme", "pets", "--num", "20", "--ledger", str(ledger)]) == 0
    out = capsys.readouterr().out
    assert "20 keeps:" in out and out.strip().endswith("OK")


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
        ]
    )
    studio = serve.build_studio(args)
    assert len(studio.themes) == 20 and studio.themes["exported-5"].label == 5
    with TestClient(serve.create_app(studio)) as client:
        themes = {t["id"]: t for t in client.get("/api/themes").json()["themes"]}
        assert themes["digits-5"]["checks_training_set"] and not themes["exported-5"]["checks_training_set"]
        candidate = client.post("/api/candidates", json={"theme": "exported-5"}).json()
        assert client.post("/api/keep", json={"candidate": candidate["id"]}).json()["avatar"] == "exported.0"
    assert ledger_entries(export / "issued.npz")["labels"].tolist() == [5]
    same = serve.parse_args(["--theme", f"a={cond_run}", "--theme", f"b={cond_run}"])
    with pytest.raises(serve.ConfigError, match=f"--theme b={cond_run}: the folder is already the theme a"):
        serve.build_studio(same)


def test_a_folder_is_one_theme_however_it_is_spelled(tmp_path, monkeypatch):
    """A folder given twice is refused before any model loads, naming the theme that has it,
    also when the second spelling differs (`runs/x/../x`); distinct folders each load once."""
    loaded = []
    monkeypatch.setattr(serve.Source, "load", classmethod(lambda cls, key, path, features: loaded.append(key)))
    monkeypatch.setattr(serve, "Studio", lambda sources, *args: sources)
    (tmp_path / "x").mkdir()
    twice = serve.parse_args(["--theme", f"a={tmp_path / 'x'}", "--theme", f"b={tmp_path / 'x' / '..' / 'x'}"])
    with pytest.raises(serve.ConfigError, match=r"--theme b=.*: the folder is already the theme a"):
        serve.build_studio(twice)
    assert loaded == []
    serve.build_studio(serve.parse_args(["--theme", f"a={tmp_path / 'x'}", "--theme", f"b={tmp_path / 'y'}"]))
    assert loaded == ["a", "b"]
