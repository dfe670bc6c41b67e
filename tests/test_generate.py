import json

import numpy as np
import pytest
from helpers import issue
from PIL import Image

from tfgen import generate, sampling, store, uniqueness
from tfgen.errors import RunError


@pytest.fixture(scope="module")
def trained_run(toy_run):
    return toy_run  # the session's toy run (conftest), trained once for every module that reads it


@pytest.fixture(scope="module")
def conditional_run(cond_toy_run):
    return cond_toy_run  # the session's (conftest)


@pytest.fixture(scope="module")
def toy_training(trained_run):
    """(ImageData, pixel FeatureSpace, training features) of the toy run's 64 digits."""
    sampler = sampling.Sampler.from_run(trained_run)
    data = uniqueness.training_data(sampler)
    space = uniqueness.FeatureSpace("pixels")
    return data, space, uniqueness.training_features(data, space)


def diverse_sampler(latent_dim=4):
    """A stand-in generator with clearly different images for different z (the toy GAN's are all grey)."""
    weights = np.random.default_rng(42).standard_normal((latent_dim, 64)).astype(np.float32)
    return sampling.Sampler(
        lambda z, labels: np.tanh(z @ weights).reshape(-1, 8, 8, 1), latent_dim, (8, 8, 1), [], "diverse"
    )


def test_seed_reproduces_the_images_exactly(trained_run, tmp_path):
    run = ["--run", str(trained_run), "--num", "6"]
    assert generate.main([*run, "--seed", "7", "--out", str(tmp_path / "a.npy")]) == 0
    assert generate.main([*run, "--seed", "7", "--out", str(tmp_path / "b.npy")]) == 0
    assert generate.main([*run, "--seed", "8", "--out", str(tmp_path / "c.npy")]) == 0
    a, b, c = (np.load(tmp_path / f"{n}.npy") for n in "abc")
    assert a.shape == (6, 8, 8, 1) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_export_folder_gives_the_runs_images_and_png_outputs(trained_run, tmp_path):
    common = ["--num", "5", "--seed", "3"]
    assert generate.main(["--run", str(trained_run), *common, "--out", str(tmp_path / "run.npy")]) == 0
    assert generate.main(["--export", str(trained_run / "saved_model"), *common, "--out", str(tmp_path / "x.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), np.load(tmp_path / "run.npy"), atol=1e-5)
    assert generate.main(["--run", str(trained_run), *common, "--out", str(tmp_path / "grid.png")]) == 0
    assert Image.open(tmp_path / "grid.png").size[0] >= 512
    assert generate.main(["--run", str(trained_run), *common, "--individual", "--out", str(tmp_path / "one")]) == 0
    files = sorted((tmp_path / "one").iterdir())
    assert [f.name for f in files] == [f"{i:04d}.png" for i in range(5)]
    assert Image.open(files[0]).size == (8, 8)


def test_truncation_keeps_every_latent_entry_within_t():
    sampler = diverse_sampler(latent_dim=16)
    z = sampler.noise(np.random.default_rng(0), 500, truncation=0.5)
    assert np.abs(z).max() <= 0.5 and z.std() > 0.2
    assert np.abs(sampler.noise(np.random.default_rng(0), 500)).max() > 2


def test_interpolation_runs_from_seed_a_to_seed_b(trained_run, tmp_path):
    out = tmp_path / "path.png"
    args = ["--run", str(trained_run), "--interpolate", "11", "12", "--steps", "5", "--out", str(out)]
    assert generate.main(args) == 0
    assert out.is_file() and Image.open(out).size[0] >= 512
    gif = Image.open(tmp_path / "path.gif")
    assert gif.n_frames == 8  # 5 frames forward, 3 back
    sampler = sampling.Sampler.from_run(trained_run)
    frames = generate.interpolate(sampler, 11, 12, 5)
    for seed, frame in ((11, frames[0]), (12, frames[-1])):
        assert (
            generate.main(
                ["--run", str(trained_run), "--num", "1", "--seed", str(seed), "--out", str(tmp_path / f"{seed}.npy")]
            )
            == 0
        )
        np.testing.assert_allclose(frame, np.load(tmp_path / f"{seed}.npy")[0], atol=1e-5)


def test_conditional_models_take_a_label_or_a_class_name(conditional_run, tmp_path, capsys):
    run = ["--run", str(conditional_run), "--num", "4", "--seed", "1"]
    assert generate.main([*run, "--label", "3", "--out", str(tmp_path / "label.npy")]) == 0
    assert generate.main([*run, "--class", "3", "--out", str(tmp_path / "class.npy")]) == 0
    assert generate.main([*run, "--label", "4", "--out", str(tmp_path / "other.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "label.npy"), np.load(tmp_path / "class.npy"))
    assert not np.array_equal(np.load(tmp_path / "label.npy"), np.load(tmp_path / "other.npy"))
    assert json.loads((conditional_run / "saved_model" / "tfgen.json").read_text())["class_names"][3] == "3"
    assert generate.main([*run, "--label", "10"]) == 2
    assert "--label 10: out of range; the model has 10 classes, labels 0-9" in capsys.readouterr().err
    assert generate.main([*run, "--class", "cat"]) == 2
    assert "--class cat: unknown class; valid: 0, 1, 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run", "{tmp}/missing"], "is not a run directory"),
        (["--export", "{tmp}/missing"], "--export: {tmp}/missing does not exist"),
        (["--export", "{tmp}"], "has no tfgen.json"),
        (["--export", "{tmp}/keras_export"], "is not a SavedModel"),
        (["--run", "{run}", "--num", "0"], "--num: expected an integer >= 1"),
        (["--run", "{run}", "--truncation", "0"], "--truncation: expected a number > 0"),
        (["--run", "{run}", "--label", "1"], "is not a conditional model"),
        (["--run", "{run}", "--interpolate", "1", "2", "--format", "npy"], "--interpolate writes a PNG strip"),
        (["--export", "{run}/saved_model", "--unique"], "--unique compares with the training images and needs --run"),
        (["--run", "{run}", "--out", "{tmp}"], "is a folder"),
        (["--run", "{run}", "--out", "{tmp}/grid.jpg"], "ends in .jpg, but the file written is PNG data; name it .png"),
        (["--run", "{run}", "--out", "{tmp}/grid.png", "--format", "npy"], "ends in .png, but the file written is NPY"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(trained_run, tmp_path, capsys, args, message):
    fill = {"tmp": str(tmp_path), "run": str(trained_run)}
    (tmp_path / "keras_export").mkdir()
    (tmp_path / "keras_export" / "tfgen.json").write_text("{}")
    assert generate.main([a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err
    assert message.format(**fill) in err and "Traceback" not in err


def test_unique_rejects_a_planted_copy_of_a_training_image(toy_training, tmp_path):
    data, space, train_features = toy_training
    sampler = diverse_sampler()
    planted = uniqueness.training_images(data, [5])[0]
    draw = sampler.images

    def first_draw_copies_training_image_5(z, labels=None):
        images = draw(z, labels)
        if not calls:
            images[0] = planted
        calls.append(len(z))
        return images

    calls = []
    sampler.images = first_draw_copies_training_image_5
    issued, rejected = issue(tmp_path / "avatars.db", sampler, space, train_features, 4, 0.2, seed=0)
    copy = rejected[0]
    assert (copy["draw"], copy["reason"], copy["train_index"]) == (0, "training", 5)
    assert copy["train_distance"] < 1e-6
    assert len(issued) == 4 and 0 not in [r["draw"] for r in issued]
    assert all(r["train_distance"] > 0.2 for r in issued)


@pytest.mark.parametrize("damage", [lambda data: data[:300], lambda data: b"not a ledger"])
def test_a_damaged_old_ledger_is_named_not_a_traceback(toy_training, tmp_path, damage):
    """An issued.npz from before the store is imported on first use; a damaged one is named and
    nothing is imported (so it can be restored and imported later)."""
    data, space, train_features = toy_training
    run = tmp_path / "toy"
    run.mkdir()
    rows = {name: np.zeros((1, 4), np.float32) for name in ("features", "z")}
    rows.update(labels=np.zeros(1, np.int32), train_distance=np.ones(1, np.float32))
    rows.update(seeds=np.zeros(1, np.int64), issued_at=np.zeros(1))
    path = run / store.LEDGER_NAME
    np.savez(path, feature_space=np.array("pixels"), **rows)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(RunError, match=f"{path}: cannot import this ledger"):
        store.open_source(run, None, space.name, 4, 4)
    assert store.Store(run / "avatars.db").count("toy") == 0


def test_unique_never_reissues_an_image_from_the_store(toy_training, tmp_path):
    data, space, train_features = toy_training
    sampler = diverse_sampler()
    batches = []
    for _ in range(2):  # the same seed twice: the second call must find new images
        issued, _ = issue(tmp_path / "avatars.db", sampler, space, train_features, 5, 0.3, seed=0)
        batches.append(issued)
    ids = [r["id"] for r in batches[0] + batches[1]]
    assert len(set(ids)) == 10
    assert not {r["draw"] for r in batches[1]} & {r["draw"] for r in batches[0]}
    rows = store.Store(tmp_path / "avatars.db").export("toy")
    assert rows["ids"].tolist() == ids
    distances, _ = uniqueness.nearest(rows["features"], rows["features"], exclude=np.arange(10))
    assert distances.min() > 0.3
    # A stored row is enough to regenerate its image.
    np.testing.assert_allclose(space.features(sampler.images(rows["z"])), rows["features"], atol=1e-5)


def test_concurrent_unique_calls_never_issue_the_same_image(toy_training, tmp_path):
    import threading

    data, space, train_features = toy_training

    def user():  # two users at once, with the same seed, each with its own connection: only the lock keeps them apart
        issue(tmp_path / "avatars.db", diverse_sampler(), space, train_features, 5, 0.3, seed=0)

    threads = [threading.Thread(target=user) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    features = store.Store(tmp_path / "avatars.db").export("toy")["features"]
    assert len(features) == 10
    assert uniqueness.nearest(features, features, exclude=np.arange(10))[0].min() > 0.3


def test_unique_cli_writes_files_named_by_avatar_id_and_reports_distances(trained_run, tmp_path, capsys):
    out = tmp_path / "avatars"
    args = [
        "--run",
        str(trained_run),
        "--unique",
        "--num",
        "2",
        "--features",
        "pixels",
        "--min-distance",
        "1e-5",
        "--individual",
        "--out",
        str(out),
        "--seed",
        "4",
        "--db",
        str(tmp_path / "avatars.db"),
    ]
    assert generate.main(args) == 0
    assert generate.main(args) == 0
    rows = store.Store(tmp_path / "avatars.db").export(trained_run.name)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{i}.png" for i in rows["ids"])
    printed = capsys.readouterr().out
    assert "distance to training" in printed and "4 issued in all" in printed
    assert (rows["train_distance"] > 1e-5).all() and len(rows["z"]) == 4
    # Asking for the impossible gives up, records nothing and says what to change.
    impossible = [*args[:-2], "--min-distance", "1.9", "--max-draws", "20", "--db", str(tmp_path / "none.db")]
    assert generate.main(impossible) == 2
    assert "lower --min-distance" in capsys.readouterr().err
    assert store.Store(tmp_path / "none.db").count(trained_run.name) == 0


def test_the_store_refuses_features_of_another_space(toy_training, tmp_path, capsys, trained_run):
    args = [
        "--run",
        str(trained_run),
        "--unique",
        "--num",
        "1",
        "--min-distance",
        "1e-5",
        "--seed",
        "1",
        "--db",
        str(tmp_path / "avatars.db"),
        "--out",
        str(tmp_path / "u.png"),
    ]
    assert generate.main([*args, "--features", "pixels"]) == 0
    assert generate.main([*args, "--features", "classifier"]) == 2
    assert "are measured in pixels features (64-d), not classifier" in capsys.readouterr().err


def test_memorisation_report_writes_histogram_pairs_and_summary(trained_run, tmp_path, capsys):
    out = tmp_path / "report"
    assert (
        generate.main(
            [
                "--run",
                str(trained_run),
                "--memorisation-report",
                "20",
                "--features",
                "pixels",
                "--seed",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    summary = json.loads((out / "memorisation.json").read_text())
    assert summary["num_samples"] == 20 and summary["num_training_images"] == 64
    assert len(summary["closest"]) == 16
    assert summary["closest"][0]["distance"] == summary["sample_to_training"]["q00"]
    assert Image.open(out / "distances.png").size[0] > 300 and Image.open(out / "closest_pairs.png").size[0] > 300
    assert "closer to a training image than any two training images" in capsys.readouterr().out


def test_a_model_that_only_reconstructs_is_sent_to_the_command_that_takes_it(tmp_path, capsys):
    """An SDPC run neither samples nor translates: `tfgen generate` and `tfgen translate` both
    refuse it naming `tfgen evaluate --metric rec`, which does take it (no loop of refusals)."""
    from helpers import toy_model

    from tfgen import evaluate, translate

    run = tmp_path / "sdpc"
    run.mkdir()
    (run / "config.yaml").write_text(
        "model: {name: sdpc, channels: [4], kernel_sizes: [3], strides: [2], lambdas: [0.1], iterations: 3}\n"
        "data: {source: digits, image_size: 8, batch_size: 8, limit: 64}\n"
    )
    toy_model("sdpc", channels=(4,), kernel_sizes=(3,), strides=(2,), lambdas=(0.1,), iterations=3).save(
        run / "model.keras"
    )
    with pytest.raises(
        RunError,
        match="reconstructs images instead of sampling them; score its "
        "reconstructions with tfgen evaluate --metric rec",
    ):
        sampling.Sampler.from_run(run)
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    refusals = [
        generate.main(["--run", str(run), "--num", "2", "--out", str(tmp_path / "x.png")]),
        translate.main(["--run", str(run), "--input", str(tmp_path / "in.png"), "--out", str(tmp_path / "t")]),
    ]
    assert refusals == [2, 2]
    err = capsys.readouterr().err
    assert err.count("tfgen evaluate --metric rec") == 2
    assert "use tfgen translate" not in err and "use tfgen generate" not in err
    assert evaluate.main(["--run", str(run), "--metric", "rec", "--num", "16"]) == 0
    assert "rec_mse" in json.loads((run / "eval.json").read_text())
