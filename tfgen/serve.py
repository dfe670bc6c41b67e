"""`tfgen serve --theme anime=runs/anime_dcgan --theme digits=runs/mnist5k_cond_gan`

The avatar studio: a web page where a person picks a theme, generates and re-rolls candidates,
and keeps the one they like, which nobody else will ever get. Served by FastAPI on uvicorn
(`pip install -e ".[serve]"`), with a JSON API under `/api/` (OpenAPI page at `/docs`) and
TF Serving's REST predict shape at `/v1/models/<theme>:predict`.

A theme is a run folder or an exported SavedModel; a conditional run gives one theme per
class. Uniqueness is `tfgen.uniqueness`: a candidate is drawn only if it is farther than
`--min-distance` from every training image and every kept avatar of its run; keeping it claims
it in the run's ledger under the ledger's lock, which re-checks against avatars kept
meanwhile, by this server or by anyone else. An avatar is reported kept only once the ledger
is on disk, so a killed server loses none, and its picture is regenerated from the ledger's
latent, so the ledger is the one record to back up.

Models are loaded once at start-up; generation runs in worker threads, batched across
concurrent requests (`Batcher`), so the event loop keeps answering while a model runs.
"""

import argparse
import asyncio
import collections
import dataclasses
import io
import re
import secrets
import sys
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from tfgen import cli, images, uniqueness
from tfgen.errors import ConfigError, RunError, TfgenError
from tfgen.sampling import Sampler

log = cli.log

STATIC = Path(__file__).parent / "studio"
MAX_DOWNLOAD = 1024  # pixels a side: a 1024 px PNG is what avatar sites take
MAX_CANDIDATES = 4096  # candidates remembered for Keep; older ones expire
MAX_PREDICT = 256  # instances per :predict call
DRAWS_PER_ROUND = 8  # latents screened per model call when drawing a candidate


# -- where avatars come from -----------------------------------------------------------------


class Batcher:
    """Run a generator on batches gathered from concurrent requests, in a worker thread.

    Requests that arrive while the model is busy wait in a queue and are answered by the
    next call in one batch (up to `max_batch` latents), so N users cost about N/batch model
    calls, and the event loop never waits on TensorFlow.
    """

    def __init__(self, fn, max_batch=64):
        self.fn = fn
        self.max_batch = max_batch
        self.calls = 0  # model calls made: tests and logs see the batching at work
        self._pending = collections.deque()
        self._loop = self._wakeup = None

    async def __call__(self, z, labels):
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first call, or a new event loop (test clients make one each)
            self._loop, self._wakeup = loop, asyncio.Event()
            loop.create_task(self._worker())
        future = loop.create_future()
        self._pending.append((z, labels, future))
        self._wakeup.set()
        return await future

    async def _worker(self):
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                jobs = [self._pending.popleft()]
                rows = len(jobs[0][0])
                while self._pending and rows + len(self._pending[0][0]) <= self.max_batch:
                    jobs.append(self._pending.popleft())
                    rows += len(jobs[-1][0])
                await self._run(jobs)

    async def _run(self, jobs):
        z = np.concatenate([job[0] for job in jobs])
        labels = None if jobs[0][1] is None else np.concatenate([job[1] for job in jobs])
        try:
            out = await asyncio.to_thread(self.fn, z, labels)
            self.calls += 1
        except Exception as exc:  # noqa: BLE001  (handed to every waiting request)
            for *_, future in jobs:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for job_z, _, future in jobs:
            if not future.done():  # its request may have been cancelled (the client left)
                future.set_result(out[start : start + len(job_z)])
            start += len(job_z)


class Source:
    """One generator (a run or an export) with its uniqueness state: the feature space, the
    training images' features, its ledger and an in-memory copy of what the ledger holds.

    All themes of one run (a conditional run gives one per class) share its Source, so an
    avatar kept in one class counts for all. A folder is one Source: `build_studio` refuses a
    folder given twice.
    """

    def __init__(self, key, sampler, space, train_features, ledger_path):
        self.key = key
        self.sampler = sampler
        self.space = space
        self.train_features = train_features
        self.ledger_path = Path(ledger_path)
        self.generate = Batcher(sampler.images)
        self.lock = threading.Lock()  # one writer per process; the ledger's file lock covers the rest
        self.feature_dim = space.features(np.zeros((1, *sampler.image_shape), np.float32)).shape[1]
        self.kept = self._ledger_snapshot()

    @classmethod
    def load(cls, key, path, features="auto"):
        """A run folder or SavedModel export; RunError naming the folder if it cannot be loaded."""
        path = Path(path)
        try:
            if (path / "saved_model.pb").is_file():
                sampler = Sampler.from_export(path)
                log.info(
                    "theme %s: %s is an export without its training set; avatars are compared with each other only",
                    key,
                    path,
                )
                space, train_features = uniqueness.FeatureSpace("pixels"), None
            else:
                sampler = Sampler.from_run(path)
                data = uniqueness.training_data(sampler)
                space = uniqueness.feature_space(features, sampler, data)
                train_features = uniqueness.training_features(data, space)
            return cls(key, sampler, space, train_features, path / uniqueness.LEDGER_NAME)
        except TfgenError as exc:
            reason = re.sub(r"^--[\w-]+: ", "", str(exc))  # the flag named is --theme, not --run
            raise RunError(f"--theme {key}={path}: cannot be served: {reason}") from None

    def ledger(self):
        """The ledger, to be used as a context manager (it locks the file)."""
        return uniqueness.Ledger(self.ledger_path, self.space.name, self.feature_dim, self.sampler.noise_size)

    def _ledger_snapshot(self):
        with self.ledger() as ledger:
            return dict(ledger.entries)

    def train_distance(self, features):
        if self.train_features is None:
            return np.full(len(features), np.inf)
        return uniqueness.nearest(features, self.train_features)[0]


@dataclasses.dataclass
class Theme:
    """What the page shows as one card: a Source, and the class it draws (conditional runs)."""

    id: str
    title: str
    group: str
    source: Source
    label: int | None = None
    example: bytes = b""


@dataclasses.dataclass
class Candidate:
    """A drawn image that passed the screening: what Keep needs to claim it (its latent and
    features), its PNG for the page, and once kept, the avatar id (so it is kept once only)."""

    id: str
    theme: Theme
    z: np.ndarray
    features: np.ndarray
    train_distance: float
    seed: int
    png: bytes
    kept: str | None = None


class Exhausted(Exception):
    """No candidate far enough from the training set and the kept avatars: HTTP 409."""


class Taken(Exception):
    """A look-alike was kept first (or this candidate was already kept): HTTP 409."""


class NotFound(Exception):
    """An unknown theme, candidate or avatar: HTTP 404."""


class BadRequest(Exception):
    """A well-formed request asking for something out of range: HTTP 400."""


def slug(text):
    """`text` as a theme id that is safe in a URL path (class names may hold spaces or slashes)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "theme"


def png_bytes(picture, size=None, smooth=False):
    """A float [-1, 1] image [H, W, C] as PNG bytes, upscaled to `size` px a side if given."""
    image = images.to_pil(images.to_uint8(picture))
    if size and size != image.width:
        image = image.resize((size, size), Image.LANCZOS if smooth else Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Studio:
    """Themes, candidates and keeps: everything the web app does, without the web.

    `themes` maps a theme id to its Theme. `generate` and `keep` are coroutines; the model
    and the ledger run in worker threads.
    """

    def __init__(self, sources, min_distance=0.1, max_draws=256):
        self.min_distance = min_distance
        self.max_draws = max_draws
        self.sources = {source.key: source for source in sources}
        self.themes = {}
        for source in sources:
            names = source.sampler.class_names
            for label, name in enumerate(names or [None]):
                theme_id = slug(source.key if name is None else f"{source.key}-{name}")
                if theme_id in self.themes:
                    raise ConfigError(f"--theme {source.key}: theme {theme_id!r} is given twice")
                self.themes[theme_id] = Theme(
                    theme_id,
                    source.key if name is None else str(name),
                    source.key,
                    source,
                    None if name is None else label,
                )
        self.candidates = collections.OrderedDict()

    async def example(self, theme):
        """One picture for the theme's card (a fixed seed; never handed out as an avatar)."""
        if not theme.example:
            z = theme.source.sampler.noise(np.random.default_rng(0), 1)
            labels = None if theme.label is None else np.array([theme.label], np.int32)
            theme.example = png_bytes((await theme.source.generate(z, labels))[0])
        return theme.example

    def theme(self, theme_id):
        if theme_id not in self.themes:
            raise NotFound(f"unknown theme {theme_id!r}; themes: {', '.join(self.themes)}")
        return self.themes[theme_id]

    async def predict(self, theme, z, labels):
        """Raw images [-1, 1] for given latents (TF Serving's predict); no uniqueness involved."""
        return await theme.source.generate(z, labels)

    async def generate(self, theme_id):
        """A fresh Candidate of the theme, screened against the training set and kept avatars."""
        theme = self.theme(theme_id)
        source = theme.source
        seed = secrets.randbits(62)
        rng = np.random.default_rng(seed)
        for _ in range(0, self.max_draws, DRAWS_PER_ROUND):
            z = source.sampler.noise(rng, DRAWS_PER_ROUND)
            labels = None if theme.label is None else np.full(len(z), theme.label, np.int32)
            pictures = await source.generate(z, labels)
            features, train_distance, kept_distance = await asyncio.to_thread(self._screen, source, pictures)
            for k in range(len(z)):
                if not uniqueness.rejection(train_distance[k], kept_distance[k], self.min_distance):
                    candidate = Candidate(
                        secrets.token_urlsafe(12),
                        theme,
                        z[k],
                        features[k],
                        float(train_distance[k]),
                        seed,
                        png_bytes(pictures[k]),
                    )
                    self._remember(candidate)
                    return candidate
        raise Exhausted(
            f"theme {theme_id!r} is exhausted: none of {self.max_draws} draws is farther than {self.min_distance} "
            f"from the training images and the {len(source.kept['z'])} avatars kept so far"
        )

    def _screen(self, source, pictures):
        features = source.space.features(pictures)
        return features, source.train_distance(features), uniqueness.nearest(features, source.kept["features"])[0]

    def _remember(self, candidate):
        self.candidates[candidate.id] = candidate
        while len(self.candidates) > MAX_CANDIDATES:
            self.candidates.popitem(last=False)

    def candidate(self, candidate_id):
        if candidate_id not in self.candidates:
            raise NotFound(f"unknown or expired candidate {candidate_id!r}; generate a new one")
        return self.candidates[candidate_id]

    async def keep(self, candidate_id):
        """Claim the candidate in its run's ledger: the avatar id, once the ledger is on disk."""
        return await asyncio.to_thread(self._keep, self.candidate(candidate_id))

    def _keep(self, candidate):
        source = candidate.theme.source
        with source.lock:
            if candidate.kept:
                raise Taken(f"candidate {candidate.id!r} is already kept, as avatar {candidate.kept}")
            with source.ledger() as ledger:
                label = -1 if candidate.theme.label is None else candidate.theme.label
                ledger_id, distance = uniqueness.claim(
                    ledger,
                    candidate.features,
                    candidate.z,
                    label,
                    candidate.train_distance,
                    candidate.seed,
                    self.min_distance,
                )
                source.kept = dict(ledger.entries)
        if ledger_id is None:
            raise Taken(
                f"someone kept a look-alike first (distance {distance:.3f} <= {self.min_distance}); generate another"
            )
        candidate.kept = f"{source.key}.{ledger_id}"
        return candidate.kept

    def avatar(self, avatar_id):
        """(Source, ledger index) of a kept avatar id `<source>.<n>` (n: its row in the ledger)."""
        key, _, index = avatar_id.rpartition(".")
        if key not in self.sources or not (index.isascii() and index.isdigit()):  # "²".isdigit() too
            raise NotFound(f"unknown avatar {avatar_id!r}")
        source = self.sources[key]
        if int(index) >= len(source.kept["z"]):
            source.kept = source._ledger_snapshot()  # kept by another process since
        if int(index) >= len(source.kept["z"]):
            raise NotFound(f"unknown avatar {avatar_id!r}")
        return source, int(index)

    async def avatar_png(self, avatar_id, size=None, smooth=False):
        """A kept avatar as PNG, regenerated from its ledger entry, at `size` px a side."""
        source, index = self.avatar(avatar_id)
        shape = source.sampler.image_shape
        if size is not None and not shape[0] <= size <= MAX_DOWNLOAD:
            raise BadRequest(f"size: expected {shape[0]} to {MAX_DOWNLOAD} pixels, got {size}")
        z = source.kept["z"][index : index + 1]
        label = int(source.kept["labels"][index])
        picture = (await source.generate(z, None if label < 0 else np.array([label], np.int32)))[0]
        return png_bytes(picture, size, smooth)


# -- the web app -----------------------------------------------------------------------------


def create_app(studio):
    """The FastAPI app serving `studio`: the page, the JSON API and TF Serving's predict."""
    from fastapi import FastAPI, Query, Request  # noqa: PLC0415  (an optional extra)
    from fastapi.responses import FileResponse, JSONResponse, Response  # noqa: PLC0415
    from fastapi.staticfiles import StaticFiles  # noqa: PLC0415
    from pydantic import BaseModel, Field  # noqa: PLC0415

    app = FastAPI(
        title="tfgen avatar studio",
        version="1",
        description="Pick a theme, generate, re-roll, keep an avatar nobody else will get.",
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def error(status, message):
        return JSONResponse({"error": message}, status_code=status)

    for exc_type, status in ((NotFound, 404), (Exhausted, 409), (Taken, 409), (BadRequest, 400)):
        app.add_exception_handler(exc_type, lambda request, exc, status=status: error(status, str(exc)))

    def png(data):
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    def theme_json(theme):
        source = theme.source
        return {
            "id": theme.id,
            "title": theme.title,
            "group": theme.group,
            "label": theme.label,
            "image_shape": list(source.sampler.image_shape),
            "example_url": f"/api/themes/{theme.id}/example.png",
            "checks_training_set": source.train_features is not None,
        }

    class GenerateRequest(BaseModel):
        theme: str = Field(description="a theme id from /api/themes")

    class KeepRequest(BaseModel):
        candidate: str = Field(description="a candidate id from POST /api/candidates")

    class PredictRequest(BaseModel):
        instances: list = Field(description='latents: [[z...], ...] or [{"z": [...], "label": 3}, ...]')

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/api/health")
    def health():
        return {"status": "ok", "themes": len(studio.themes)}

    @app.get("/api/themes")
    def themes():
        return {
            "themes": [theme_json(t) for t in studio.themes.values()],
            "min_distance": studio.min_distance,
            "max_download": MAX_DOWNLOAD,
        }

    @app.get("/api/themes/{theme_id}/example.png", response_class=Response)
    async def example(theme_id: str):
        theme = studio.theme(theme_id)
        return png(await studio.example(theme))

    @app.post("/api/candidates")
    async def generate(request: GenerateRequest):
        candidate = await studio.generate(request.theme)
        distance = candidate.train_distance  # infinite (null) for an export: no training set to compare
        return {
            "id": candidate.id,
            "theme": candidate.theme.id,
            "image_url": f"/api/candidates/{candidate.id}.png",
            "train_distance": distance if np.isfinite(distance) else None,
        }

    @app.get("/api/candidates/{candidate_id}.png", response_class=Response)
    def candidate_image(candidate_id: str):
        return png(studio.candidate(candidate_id).png)

    @app.post("/api/keep")
    async def keep(request: KeepRequest):
        avatar_id = await studio.keep(request.candidate)
        return {"avatar": avatar_id, "image_url": f"/api/avatars/{avatar_id}.png"}

    @app.get("/api/avatars/{avatar_id}.png", response_class=Response)
    async def avatar(
        avatar_id: str,
        size: int = Query(None, description=f"pixels a side, up to {MAX_DOWNLOAD}"),
        resample: str = Query("nearest", pattern="^(nearest|smooth)$"),
    ):
        data = await studio.avatar_png(avatar_id, size, resample == "smooth")
        return Response(
            data,
            media_type="image/png",
            headers={"Content-Disposition": f'attachment; filename="avatar-{avatar_id}.png"'},
        )

    @app.post("/v1/models/{theme_id}:predict")
    async def predict(theme_id: str, request: PredictRequest):
        theme = studio.theme(theme_id)
        z, labels = _instances(theme, request.instances)
        out = await studio.predict(theme, z, labels)
        return {"predictions": np.asarray(out).tolist()}

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return error(500, f"internal error: {type(exc).__name__}")

    return app


def _instances(theme, instances):
    """(z [N, *noise_shape], labels or None) from TF Serving-style instances, each z flat
    (`noise_size` numbers) or nested in the noise's shape; BadRequest if malformed."""
    sampler = theme.source.sampler
    if not 1 <= len(instances) <= MAX_PREDICT:
        raise BadRequest(f"instances: expected 1 to {MAX_PREDICT}, got {len(instances)}")
    rows = [item if isinstance(item, dict) else {"z": item} for item in instances]
    try:
        z = np.array([row["z"] for row in rows], np.float64)  # float32 after the range check below
        labels = [row.get("label", theme.label) for row in rows]
    except (KeyError, TypeError, ValueError):
        raise BadRequest('instances: expected lists of numbers or {"z": [...], "label": n}') from None
    if z.shape not in ((len(rows), sampler.noise_size), (len(rows), *sampler.noise_shape)):
        raise BadRequest(f"instances: each z needs {sampler.noise_size} numbers")
    z = z.reshape(len(rows), *sampler.noise_shape)
    if not (np.abs(z) <= np.finfo(np.float32).max).all():  # NaN, inf, 1e39: no picture, no JSON reply
        raise BadRequest("instances: every z value must be a finite number within float32's range")
    z = z.astype(np.float32)
    if not sampler.conditional:
        return z, None
    if any(
        isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(sampler.class_names)
        for label in labels
    ):
        raise BadRequest(f"instances: label must be an integer 0-{len(sampler.class_names) - 1}")
    return z, np.array(labels, np.int32)


# -- the command -----------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="tfgen serve",
        description="The avatar studio: a web page to generate, re-roll and keep unique avatars.",
        epilog="Example: tfgen serve --theme digits=runs/mnist5k_cond_gan --port 8000",
    )
    parser.add_argument(
        "--theme",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a theme: a run folder or an exported SavedModel (repeatable; a conditional "
        "run gives one theme per class)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--min-distance",
        type=float,
        default=0.1,
        help="how far a kept avatar must be from training images and other avatars (default 0.1)",
    )
    parser.add_argument(
        "--max-draws",
        type=int,
        default=256,
        help="draws per Generate before the theme counts as exhausted (default 256)",
    )
    parser.add_argument(
        "--features",
        choices=uniqueness.FEATURES,
        default="auto",
        help="distance space (auto: classifier if the data has labels, else pixels)",
    )
    cli.add_verbose_argument(parser)
    return parser.parse_args(argv)


def parse_themes(values):
    """[(name, Path)] from NAME=PATH strings; ConfigError for a malformed one."""
    themes = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--theme {value}: expected NAME=PATH, e.g. digits=runs/mnist5k_cond_gan")
        if slug(name) != name:
            raise ConfigError(f"--theme {value}: the name may hold letters, digits, '_', '.' and '-' only")
        themes.append((name, Path(path)))
    return themes


def build_studio(args):
    """Load every theme's model once: one Source (model and ledger) per folder.

    A folder given twice, under two names or spelled two ways, is refused, naming the theme
    that has it: two names for one model would show each of its cards twice.
    """
    if not args.min_distance >= 0:
        raise ConfigError(f"--min-distance: expected a number >= 0, got {args.min_distance}")
    if args.max_draws < DRAWS_PER_ROUND:
        raise ConfigError(f"--max-draws: expected an integer >= {DRAWS_PER_ROUND}, got {args.max_draws}")
    folders = {}
    for name, path in parse_themes(args.theme):
        folder = path.resolve()
        if folder in folders:
            raise ConfigError(f"--theme {name}={path}: the folder is already the theme {folders[folder][0]}")
        folders[folder] = name, path
    sources = {}
    for folder, (name, path) in folders.items():
        log.info("loading theme %s from %s", name, path)
        sources[folder] = Source.load(name, path, args.features)
    return Studio(list(sources.values()), args.min_distance, args.max_draws)


def main(argv=None):
    """CLI entry point; returns the exit status (2 for errors the user can fix)."""
    return cli.run(_serve_command, parse_args(argv))


def _serve_command(args):
    try:
        import uvicorn  # noqa: PLC0415
    except ImportError:
        raise ConfigError('tfgen.serve needs FastAPI and uvicorn: pip install -e ".[serve]"') from None
    studio = build_studio(args)
    log.info("%d themes: %s", len(studio.themes), ", ".join(studio.themes))
    log.info("the studio is at http://%s:%d/ (API docs at /docs)", args.host, args.port)
    uvicorn.run(create_app(studio), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
