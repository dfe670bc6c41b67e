"""`tfgen serve --theme anime=runs/anime_dcgan --theme digits=runs/mnist5k_cond_gan`

The avatar studio: a web page where a person picks a theme, generates and re-rolls candidates,
and keeps the one they like, which nobody else will ever get. Served by FastAPI on uvicorn
(`pip install -e ".[serve]"`), with a JSON API under `/api/` (OpenAPI page at `/docs`).

A theme is a run folder, an exported SavedModel or a preset (`preset:NAME`, `tfgen presets`); a
conditional model gives one theme per class. Uniqueness is `tfgen.uniqueness`: a candidate is
drawn only if it is farther than `--min-distance` from every training image and every kept
avatar of its model; keeping it checks again, under the store's write lock, against the avatars
kept since it was drawn (by this server or any other on the same store), and records it
(`tfgen.store`: SQLite in the run folder or `--db PATH`, or PostgreSQL). An avatar is reported
kept only once its row is committed, so a killed server loses none, and its picture is
regenerated from the stored noise, so the store is the one record to back up.

Who may do what:
- A visitor is identified by an HttpOnly, SameSite cookie made on their first request (no
  account). Their candidates and kept avatars are theirs: ids are unguessable, and anyone else
  asking for one gets 404, as for an id that does not exist. An owner can make a share link
  for one avatar.
- Generates and keeps are limited per visitor and per address (`--generate-limit`,
  `--keep-limit`, ...), answered with 429 and Retry-After, so no script empties a theme.
- TF Serving's `/v1/models/<theme>:predict` (any noise, no uniqueness) and the operator's
  views (`/api/admin/...`) need the token in `--admin-token-file`, and are off without it.

Models are loaded once at start-up; generation runs in worker threads, batched across
concurrent requests (`Batcher`), so the event loop keeps answering while a model runs.
"""

import argparse
import asyncio
import collections
import concurrent.futures
import dataclasses
import io
import math
import re
import secrets
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tfgen import cli, images, presets, store, uniqueness
from tfgen.errors import ConfigError, RunError, TfgenError
from tfgen.sampling import Sampler

log = cli.log

STATIC = Path(__file__).parent / "studio"
MAX_DOWNLOAD = 1024  # pixels a side: a 1024 px PNG is what avatar sites take
MAX_CANDIDATES = 4096  # candidates remembered for Keep; older ones expire
MAX_PREDICT = 256  # instances per :predict call
DRAWS_PER_ROUND = 8  # the most latents screened per model call when drawing a candidate
MAX_GROUP_COMMIT = 256  # keeps claimed in one transaction at most
PICTURE_CACHE = 4096  # kept avatars' pictures held in memory (each is regenerated when it falls out)
MAX_LISTED = 1000  # avatars listed per owner
OWNER_COOKIE = "tfgen_owner"
COOKIE_AGE = 2 * 365 * 24 * 3600  # seconds: a visitor's identity lasts two years in their browser
CAPACITY_WINDOW = 2000  # recent draws the capacity estimate is made from


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
                end = start + len(job_z)
                future.set_result(tuple(x[start:end] for x in out) if isinstance(out, tuple) else out[start:end])
            start += len(job_z)


class Capacity:
    """About how many more distinct avatars a model can give at the current --min-distance.

    Of the recent draws that were not copies of training images, the share `p` that were too
    close to a kept avatar estimates the part of the model's output the `n` kept avatars
    already cover, about n times what one covers: so about n * (1 - p) / p more fit. Without
    any such rejection among m draws, p is below 3/m (the rule of three), so more than
    n * (m / 3 - 1) fit. An estimate to plan with, not a promise: shown as "about".
    """

    def __init__(self, window=CAPACITY_WINDOW):
        self.recent = collections.deque(maxlen=window)

    def record(self, too_close):
        self.recent.extend(bool(x) for x in too_close)

    def estimate(self, kept):
        draws = len(self.recent)
        if not kept or draws < 20:
            return {"kept": kept, "left": None, "bound": "unknown"}
        rejected = sum(self.recent)
        if not rejected:
            return {"kept": kept, "left": int(kept * (draws / 3 - 1)), "bound": "more than"}
        p = rejected / draws
        return {"kept": kept, "left": int(kept * (1 - p) / p), "bound": "about"}


def feature_size(space, sampler):
    """How many numbers `space` measures one of `sampler`'s images with."""
    return space.features(np.zeros((1, *sampler.image_shape), np.float32)).shape[1]


class Source:
    """One generator (a run or an export) with its uniqueness state: the feature space, the
    training images' features, the store it keeps avatars in (under `name`) and this process's
    index of their features.

    All themes of one run (a conditional run gives one per class) share its Source, so an
    avatar kept in one class counts for all. A folder is one Source: `build_studio` refuses a
    folder given twice.
    """

    def __init__(self, key, sampler, space, train_features, avatar_store, name):
        self.key = key
        self.sampler = sampler
        self.space = space
        self.train_features = train_features
        self.store = avatar_store
        self.name = name
        self.generate = Batcher(sampler.images)
        self.draw = Batcher(self._draw)  # generate and screen in one thread hop, batched
        self.min_distance = 0.0  # the Studio's, set when it takes this source
        self.feature_dim = feature_size(space, sampler)
        self.index = uniqueness.KeptIndex(self.feature_dim, train_features).refresh(avatar_store.reader(name))
        self.training = None if train_features is None else uniqueness.KeptIndex.of(train_features)
        self.capacity = Capacity()
        self.accepted = collections.deque([True] * 20, maxlen=200)  # recent draws that passed the screening
        self.pictures = collections.OrderedDict()  # avatar id -> picture, the most recently kept or shown

    def _draw(self, z, labels):
        """Pictures of a batch of draws and how they compare: (pictures, features, distance to
        the nearest training image, to the nearest kept avatar (inf beyond --min-distance),
        watermark: the last stored avatar the screening saw, the same for every row)."""
        pictures = self.sampler.images(z, labels)
        self.index.refresh(self.store.reader(self.name))
        watermark = self.index.seq  # read before the screening: it sees at least the avatars up to it
        features = self.space.features(pictures)
        kept = self.index.nearest(features, radius=self.min_distance)
        return pictures, features, self.train_distance(features), kept, np.full(len(z), watermark)

    def round_size(self):
        """Draws per model call: about two accepted ones expected, 2 to DRAWS_PER_ROUND."""
        rate = max(sum(self.accepted) / len(self.accepted), 1 / DRAWS_PER_ROUND)
        return int(min(DRAWS_PER_ROUND, max(2, math.ceil(2 / rate))))

    def remember_picture(self, avatar_id, picture):
        self.pictures[avatar_id] = picture
        self.pictures.move_to_end(avatar_id)
        while len(self.pictures) > PICTURE_CACHE:
            self.pictures.popitem(last=False)

    @classmethod
    def load(cls, key, path, features="auto", db=None, stores=None):
        """A run folder, SavedModel export or preset folder; RunError naming the folder if it
        cannot be loaded.

        A run's avatars are screened against its training images; a preset's too where its
        training data is at hand (mnist5k is, in every install), else, as an export's, only
        against each other. A shipped preset's store defaults to avatars.db in the working
        directory, not inside the installed package."""
        path = Path(path)
        try:
            preset = (path / presets.METADATA).is_file()
            if preset:
                sampler = presets.read(path).sampler()
                db = Path.cwd() / store.STORE_NAME if db is None and path.parent == presets.PRESET_DIR else db
            elif (path / "saved_model.pb").is_file():
                sampler = Sampler.from_export(path)
            else:
                sampler = Sampler.from_run(path)
            try:
                data = uniqueness.training_data(sampler)
            except TfgenError as exc:
                if not preset and sampler.cfg is not None:
                    raise  # a run whose training data is gone: say so rather than screen less
                why = "an export without its training set" if sampler.cfg is None else str(exc)
                log.info("theme %s: %s: %s; avatars are compared with each other only", key, path, why)
                space, train_features = uniqueness.FeatureSpace("pixels"), None
            else:
                space = uniqueness.feature_space(features, sampler, data)
                train_features = uniqueness.training_features(data, space)
            avatar_store, name = store.open_source(
                path, db, space.name, feature_size(space, sampler), sampler.noise_size, stores
            )
            log.info("theme %s: avatars of %s in %s", key, name, avatar_store.where)
            return cls(key, sampler, space, train_features, avatar_store, name)
        except TfgenError as exc:
            reason = re.sub(r"^--[\w-]+: ", "", str(exc))  # the flag named is --theme, not --run
            raise RunError(f"--theme {key}={path}: cannot be served: {reason}") from None

    def train_distance(self, features, radius=None):
        """Distances to the nearest training image (inf beyond `radius`, or for an export)."""
        if self.training is None:
            return np.full(len(features), np.inf)
        return self.training.nearest(features, radius=radius)


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
    """A drawn image that passed the screening, and whose it is: what Keep needs to claim it
    (its noise and features, and `watermark`, the last stored avatar it was screened
    against), its PNG for the page, and once kept, the avatar id (so it is kept once only)."""

    id: str
    theme: Theme
    owner: str
    z: np.ndarray
    features: np.ndarray
    train_distance: float
    seed: int
    png: bytes
    watermark: int = 0
    kept: str | None = None
    picture: np.ndarray | None = None


class Exhausted(Exception):
    """No candidate far enough from the training set and the kept avatars: HTTP 409."""


class Taken(Exception):
    """A look-alike was kept first (or this candidate was already kept): HTTP 409."""


class NotFound(Exception):
    """An unknown theme, candidate or avatar, or one that is someone else's: HTTP 404."""


class BadRequest(Exception):
    """A well-formed request asking for something out of range: HTTP 400."""


class TooMany(Exception):
    """Over a fair-use limit: HTTP 429, with the seconds to wait (Retry-After)."""

    def __init__(self, message, retry_after):
        super().__init__(message)
        self.retry_after = retry_after


# -- fair use ----------------------------------------------------------------------------------


PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclasses.dataclass(frozen=True)
class Rate:
    """At most `count` in any `period` seconds; `Rate.parse("10/hour")`, "off" for no limit."""

    count: int
    period: int
    text: str

    @classmethod
    def parse(cls, text, flag):
        if text in ("off", "0"):
            return None
        count, sep, unit = text.partition("/")
        unit = {"s": "second", "sec": "second", "min": "minute", "h": "hour", "d": "day"}.get(unit, unit)
        if not sep or not count.isdigit() or int(count) < 1 or unit not in PERIODS:
            raise ConfigError(f"{flag} {text}: expected COUNT/PERIOD (e.g. 10/hour; minute, hour, day) or off")
        return cls(int(count), PERIODS[unit], f"{int(count)} a {unit}")


class Limiter:
    """Sliding-window counts of one action per key (an owner, an address), in this process."""

    def __init__(self, rate):
        self.rate = rate
        self.times = {}
        self.checks = 0

    def check(self, key, now):
        """Seconds until `key` may act again (0: it may now, and this act is counted)."""
        if self.rate is None:
            return 0
        self.checks += 1
        if self.checks % 10_000 == 0:  # forget keys that have not acted within the window
            self.times = {k: t for k, t in self.times.items() if t and t[-1] > now - self.rate.period}
        times = self.times.setdefault(key, collections.deque())
        while times and times[0] <= now - self.rate.period:
            times.popleft()
        if len(times) >= self.rate.count:
            return max(1, math.ceil(times[0] + self.rate.period - now))
        times.append(now)
        return 0


class FairUse:
    """The studio's limits on generates and keeps, per owner and per address."""

    ACTIONS = {"generate": "new candidates", "keep": "keeps"}

    def __init__(
        self, generate="60/minute", generate_per_address="600/minute", keep="10/hour", keep_per_address="100/hour"
    ):
        rates = {
            ("generate", "owner"): (generate, "--generate-limit"),
            ("generate", "address"): (generate_per_address, "--generate-limit-per-address"),
            ("keep", "owner"): (keep, "--keep-limit"),
            ("keep", "address"): (keep_per_address, "--keep-limit-per-address"),
        }
        self.limiters = {key: Limiter(Rate.parse(text, flag)) for key, (text, flag) in rates.items()}

    def check(self, action, owner, address):
        """TooMany, in words, if `owner` or `address` is over the limit for `action`."""
        now = time.monotonic()
        for who, key in (("owner", owner), ("address", address)):
            limiter = self.limiters[action, who]
            wait = limiter.check(key, now)
            if wait:
                whom = "for you" if who == "owner" else "from your network address"
                raise TooMany(
                    f"Too many {self.ACTIONS[action]}: at most {limiter.rate.text} {whom}. "
                    f"Try again in {_duration(wait)}.",
                    wait,
                )


def _duration(seconds):
    if seconds < 90:
        return f"{seconds} second{'s' * (seconds != 1)}"
    if seconds < 5400:
        return f"{round(seconds / 60)} minutes"
    return f"{round(seconds / 3600)} hours"


# -- the studio --------------------------------------------------------------------------------


def _settle(future, answer):
    """Resolve a keep's future on its event loop: an avatar id, or an exception to raise."""
    if future.done():  # the request was cancelled (the client left)
        return
    if isinstance(answer, BaseException):
        future.set_exception(answer)
    else:
        future.set_result(answer)


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

    `themes` maps a theme id to its Theme. `generate`, `keep` and the downloads are
    coroutines; the model and the store run in worker threads. Every call that touches a
    candidate or an avatar names its owner (`owner`: the store's key for the visitor), and
    one that is not theirs is NotFound.
    """

    def __init__(self, sources, min_distance=0.1, max_draws=256, fair_use=None):
        self.min_distance = min_distance
        self.max_draws = max_draws
        self.fair_use = fair_use or FairUse("off", "off", "off", "off")
        self.sources = {source.key: source for source in sources}
        for source in sources:
            source.min_distance = min_distance
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
        self._keeper = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="keep")
        self._keeps = collections.deque()  # (candidate, future, loop) waiting for the keeper

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

    def capacity(self, source):
        return source.capacity.estimate(len(source.index))

    async def predict(self, theme, z, labels):
        """Raw images [-1, 1] for given latents (TF Serving's predict); no uniqueness involved."""
        return await theme.source.generate(z, labels)

    async def generate(self, theme_id, owner):
        """A fresh Candidate of the theme for `owner`, screened against the training set and
        every avatar kept so far (in any process sharing the store)."""
        theme = self.theme(theme_id)
        source = theme.source
        seed = secrets.randbits(62)
        rng = np.random.default_rng(seed)
        drawn = 0
        while drawn < self.max_draws:
            count = min(source.round_size(), self.max_draws - drawn)
            drawn += count
            z = source.sampler.noise(rng, count)
            labels = None if theme.label is None else np.full(len(z), theme.label, np.int32)
            pictures, features, train_distance, kept_distance, watermarks = await source.draw(z, labels)
            reasons = [uniqueness.rejection(t, k, self.min_distance) for t, k in zip(train_distance, kept_distance)]
            source.capacity.record(reason == "issued" for reason in reasons if reason != "training")
            source.accepted.extend(reason is None for reason in reasons)
            for k, reason in enumerate(reasons):
                if reason is None:
                    candidate = Candidate(
                        secrets.token_hex(12),
                        theme,
                        owner,
                        z[k],
                        features[k],
                        float(train_distance[k]),
                        seed,
                        png_bytes(pictures[k]),
                        int(watermarks[k]),
                        picture=pictures[k],
                    )
                    self._remember(candidate)
                    return candidate
        raise Exhausted(
            f"The theme {theme.title!r} has run out of new avatars: none of {self.max_draws} fresh draws differs "
            f"enough (more than {self.min_distance}) from the training images and the {len(source.index)} avatars "
            "kept so far. Try another theme."
        )

    def _remember(self, candidate):
        self.candidates[candidate.id] = candidate
        while len(self.candidates) > MAX_CANDIDATES:
            self.candidates.popitem(last=False)

    def candidate(self, candidate_id, owner):
        found = self.candidates.get(candidate_id)
        if found is None or not secrets.compare_digest(found.owner, owner):
            raise NotFound(f"unknown or expired candidate {candidate_id!r}; generate a new one")
        return found

    async def keep(self, candidate_id, owner):
        """Claim the owner's candidate in the store: the avatar id, once it is committed.

        Keeps run in a thread of their own, not the pool that screens candidates, so a keep
        never queues behind model work. They commit in groups: the keeper takes every keep
        waiting and claims them in one transaction (one lock, one refresh, one commit), each
        checked against the avatars kept before and those earlier in its group. Under a crowd
        a keep costs a share of one commit, not a commit of its own.
        """
        candidate = self.candidate(candidate_id, owner)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._keeps.append((candidate, future, loop))
        loop.run_in_executor(self._keeper, self._keep_waiting)
        return await future

    def _keep_waiting(self):
        """In the keeper thread: claim every keep waiting, a group per source."""
        groups = collections.defaultdict(list)
        while self._keeps and sum(map(len, groups.values())) < MAX_GROUP_COMMIT:
            candidate, future, loop = self._keeps.popleft()
            groups[candidate.theme.source.key].append((candidate, future, loop))
        for jobs in groups.values():
            try:
                answers = self._keep_group([candidate for candidate, *_ in jobs])
            except Exception as exc:  # noqa: BLE001  (handed to every keep of the group)
                answers = [exc] * len(jobs)
            for (_, future, loop), answer in zip(jobs, answers):
                loop.call_soon_threadsafe(_settle, future, answer)

    def _keep_group(self, candidates):
        """Claim candidates of one source in one transaction: per candidate, its avatar id or
        the Taken exception that refuses it."""
        source = candidates[0].theme.source
        answers, accepted = [None] * len(candidates), []  # accepted: (index, candidate)
        with source.store.writing(source.name) as writer:
            source.index.refresh(writer)  # every avatar kept before this lock: no one adds one until commit
            for i, candidate in enumerate(candidates):
                if candidate.kept:
                    answers[i] = Taken(f"candidate {candidate.id!r} is already kept, as avatar {candidate.kept}")
                    continue
                if any(c is candidate for _, c in accepted):
                    answers[i] = Taken(f"candidate {candidate.id!r} is already being kept, by another request")
                    continue
                distance = float(
                    source.index.nearest(candidate.features[None], radius=self.min_distance, since=candidate.watermark)[
                        0
                    ]
                )
                if accepted:
                    group = np.stack([c.features for _, c in accepted]).astype(np.float64)
                    distance = min(distance, float(np.linalg.norm(group - candidate.features, axis=1).min()))
                if distance <= self.min_distance:
                    answers[i] = Taken(
                        f"Someone kept a look-alike of this one a moment ago (distance {distance:.3f} <= "
                        f"{self.min_distance}); generate another"
                    )
                    continue
                accepted.append((i, candidate))
            ids = writer.insert(
                [
                    {
                        "owner": candidate.owner,
                        "label": -1 if candidate.theme.label is None else candidate.theme.label,
                        "features": candidate.features,
                        "z": np.reshape(candidate.z, -1),
                        "train_distance": candidate.train_distance,
                        "seed": candidate.seed,
                    }
                    for _, candidate in accepted
                ]
            )
        for (i, candidate), avatar_id in zip(accepted, ids):  # committed
            candidate.kept = avatar_id
            source.remember_picture(avatar_id, candidate.picture)
            answers[i] = avatar_id
        return answers

    # -- kept avatars ----------------------------------------------------------------------

    def _served(self, avatar):
        """(Source, label) that regenerates a stored avatar; NotFound for a model not served here."""
        for source in self.sources.values():
            if source.name == avatar["source"]:
                return source, avatar["label"]
        raise NotFound(f"avatar {avatar['id']!r} is of {avatar['source']}, which this studio does not serve")

    def theme_of(self, source_name, label):
        """The Theme that draws (source, label), or None."""
        for theme in self.themes.values():
            if theme.source.name == source_name and (theme.label is None or theme.label == label):
                return theme
        return None

    async def owned(self, owner):
        """The owner's avatars, newest first (dicts: id, theme, title, created_at, share)."""
        rows = []
        for avatar in await asyncio.to_thread(self._any_store_call, "owned", owner, MAX_LISTED):
            theme = self.theme_of(avatar["source"], avatar["label"])
            rows.append(
                {**avatar, "theme": theme.id if theme else None, "title": theme.title if theme else avatar["source"]}
            )
        return rows

    def _stores(self):
        """The distinct stores of this studio's sources (sources may share one)."""
        return list({id(source.store): source.store for source in self.sources.values()}.values())

    def _any_store_call(self, method, *args):
        """`method` on every store, results concatenated."""
        return [row for avatar_store in self._stores() for row in getattr(avatar_store, method)(*args)]

    def _find(self, method, key):
        """(store, row) of the first store whose `method(key)` finds a row, else (None, None)."""
        for avatar_store in self._stores():
            found = getattr(avatar_store, method)(key)
            if found is not None:
                return avatar_store, found
        return None, None

    async def _owned(self, avatar_id, owner):
        """(store, avatar) if the avatar is `owner`'s; NotFound (as for no such id) if not."""
        avatar_store, avatar = await asyncio.to_thread(self._find, "avatar", avatar_id)
        if avatar is None or avatar["owner"] is None or not secrets.compare_digest(avatar["owner"], owner):
            raise NotFound(f"unknown avatar {avatar_id!r}")
        return avatar_store, avatar

    async def owned_avatar(self, avatar_id, owner):
        """The stored avatar if it is `owner`'s; NotFound (the same as for no such id) if not."""
        return (await self._owned(avatar_id, owner))[1]

    async def share(self, avatar_id, owner):
        """The share token of the owner's avatar (made on first call)."""
        avatar_store, avatar = await self._owned(avatar_id, owner)
        if avatar["share"]:
            return avatar["share"]
        return await asyncio.to_thread(avatar_store.share, avatar_id, owner)

    async def shared(self, token):
        _, avatar = await asyncio.to_thread(self._find, "shared", token)
        if avatar is None:
            raise NotFound("unknown share link")
        return avatar

    async def avatar_png(self, avatar, size=None, smooth=False):
        """A stored avatar as PNG, regenerated from its noise and label, at `size` px a side."""
        source, label = self._served(avatar)
        shape = source.sampler.image_shape
        if size is not None and not shape[0] <= size <= MAX_DOWNLOAD:
            raise BadRequest(f"size: expected {shape[0]} to {MAX_DOWNLOAD} pixels, got {size}")
        picture = source.pictures.get(avatar["id"])
        if picture is None:
            z = np.reshape(avatar["z"], (1, *source.sampler.noise_shape))
            picture = (await source.generate(z, None if label < 0 else np.array([label], np.int32)))[0]
            source.remember_picture(avatar["id"], picture)
        return await asyncio.to_thread(png_bytes, picture, size, smooth)

    # -- the operator's view ---------------------------------------------------------------

    async def stats(self):
        """Per source: avatars kept, distinct owners, shared, and the capacity estimate."""
        counts = {}
        for source in self.sources.values():
            counts.update(await asyncio.to_thread(source.store.stats))
        return {
            source.key: {
                "store": source.store.where,
                "source": source.name,
                **counts.get(source.name, {"kept": 0, "owners": 0, "shared": 0}),
                "capacity": self.capacity(source),
            }
            for source in self.sources.values()
        }


# -- the web app -----------------------------------------------------------------------------


def create_app(studio, admin_token=None):
    """The FastAPI app serving `studio`: the page, the JSON API, and with `admin_token` TF
    Serving's predict and the operator's views."""
    from fastapi import FastAPI, Query, Request  # noqa: PLC0415  (an optional extra)
    from fastapi.responses import FileResponse, JSONResponse, Response  # noqa: PLC0415
    from fastapi.staticfiles import StaticFiles  # noqa: PLC0415
    from pydantic import BaseModel, Field  # noqa: PLC0415

    app = FastAPI(
        title="tfgen avatar studio",
        version="2",
        description=(
            "Pick a theme, generate, re-roll, keep an avatar nobody else will get. Your avatars are "
            f"tied to the `{OWNER_COOKIE}` cookie the first response sets. `/v1/models/...:predict` and "
            "`/api/admin/...` need `Authorization: Bearer <token>` (the server's --admin-token-file) "
            "and are off without it."
        ),
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def error(status, message, headers=None):
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    for exc_type, status in ((NotFound, 404), (Exhausted, 409), (Taken, 409), (BadRequest, 400)):
        app.add_exception_handler(exc_type, lambda request, exc, status=status: error(status, str(exc)))
    app.add_exception_handler(TooMany, lambda request, exc: error(429, str(exc), {"Retry-After": str(exc.retry_after)}))

    app.add_middleware(OwnerCookie)

    def owner(request):
        return request.state.owner

    def address(request):
        return request.client.host if request.client else "unknown"

    def admin(request, what):
        """Refuse an operator-only request: 404 when the server has no admin token, 401
        without the right one. Compared in constant time."""
        if admin_token is None:
            raise NotFound(f"{what} is off: start tfgen serve with --admin-token-file to use it")
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {admin_token}".encode()):
            raise Unauthorized(f"{what} needs the admin token: Authorization: Bearer <token>")

    app.add_exception_handler(Unauthorized, lambda request, exc: error(401, str(exc), {"WWW-Authenticate": "Bearer"}))

    def png(data, filename=None, cache="no-store"):
        headers = {"Cache-Control": cache}
        if filename:
            headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return Response(data, media_type="image/png", headers=headers)

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
            "capacity": studio.capacity(source),
        }

    def avatar_json(avatar):
        return {
            "avatar": avatar["id"],
            "theme": avatar.get("theme"),
            "title": avatar.get("title"),
            "image_url": f"/api/avatars/{avatar['id']}.png",
            "created_at": avatar.get("created_at"),
            "share_url": f"/api/shared/{avatar['share']}.png" if avatar.get("share") else None,
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
        return png(await studio.example(theme), cache="public, max-age=3600")

    @app.post("/api/candidates")
    async def generate(body: GenerateRequest, request: Request):
        studio.theme(body.theme)  # an unknown theme is 404 before it counts against a limit
        studio.fair_use.check("generate", owner(request), address(request))
        candidate = await studio.generate(body.theme, owner(request))
        distance = candidate.train_distance  # infinite (null) for an export: no training set to compare
        return {
            "id": candidate.id,
            "theme": candidate.theme.id,
            "image_url": f"/api/candidates/{candidate.id}.png",
            "train_distance": distance if np.isfinite(distance) else None,
        }

    @app.get("/api/candidates/{candidate_id}.png", response_class=Response)
    def candidate_image(candidate_id: str, request: Request):
        return png(studio.candidate(candidate_id, owner(request)).png)

    @app.post("/api/keep")
    async def keep(body: KeepRequest, request: Request):
        candidate = studio.candidate(body.candidate, owner(request))  # 404 before it counts
        if candidate.kept:
            raise Taken(f"candidate {candidate.id!r} is already kept, as avatar {candidate.kept}")
        studio.fair_use.check("keep", owner(request), address(request))
        avatar_id = await studio.keep(body.candidate, owner(request))
        return avatar_json({"id": avatar_id, "theme": candidate.theme.id, "title": candidate.theme.title})

    @app.get("/api/me/avatars")
    async def my_avatars(request: Request):
        return {"avatars": [avatar_json(a) for a in await studio.owned(owner(request))]}

    download_size = Query(None, description=f"pixels a side, up to {MAX_DOWNLOAD}")
    download_resample = Query("nearest", pattern="^(nearest|smooth)$")

    @app.get("/api/avatars/{avatar_id}.png", response_class=Response)
    async def avatar(avatar_id: str, request: Request, size: int = download_size, resample: str = download_resample):
        found = await studio.owned_avatar(avatar_id, owner(request))
        data = await studio.avatar_png(found, size, resample == "smooth")
        return png(data, f"avatar-{avatar_id}.png", cache="private, no-store")

    @app.post("/api/avatars/{avatar_id}/share")
    async def share(avatar_id: str, request: Request):
        token = await studio.share(avatar_id, owner(request))
        return {"avatar": avatar_id, "share_url": f"/api/shared/{token}.png"}

    @app.get("/api/shared/{token}.png", response_class=Response)
    async def shared(token: str, size: int = download_size, resample: str = download_resample):
        found = await studio.shared(token)
        return png(await studio.avatar_png(found, size, resample == "smooth"), cache="private, no-store")

    @app.post("/v1/models/{theme_id}:predict")
    async def predict(theme_id: str, body: PredictRequest, request: Request):
        admin(request, "predict")
        theme = studio.theme(theme_id)
        z, labels = _instances(theme, body.instances)
        out = await studio.predict(theme, z, labels)
        return {"predictions": np.asarray(out).tolist()}

    @app.get("/api/admin/stats")
    async def admin_stats(request: Request):
        admin(request, "/api/admin/stats")
        return {"sources": await studio.stats(), "candidates_in_memory": len(studio.candidates)}

    @app.get("/api/admin/export/{theme_group}.npz", response_class=Response)
    async def admin_export(theme_group: str, request: Request):
        admin(request, "/api/admin/export")
        if theme_group not in studio.sources:
            raise NotFound(f"unknown theme group {theme_group!r}; groups: {', '.join(studio.sources)}")
        source = studio.sources[theme_group]
        columns = await asyncio.to_thread(source.store.export, source.name)
        buffer = io.BytesIO()
        np.savez(buffer, feature_space=np.array(source.space.name), **columns)
        return Response(
            buffer.getvalue(),
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{source.name}.npz"'},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return error(500, f"internal error: {type(exc).__name__}")

    return app


class OwnerCookie:
    """ASGI middleware: every visitor has an owner token in an HttpOnly, SameSite cookie, made
    on their first request; `request.state.owner` is the store's key for it (a hash).

    Plain ASGI rather than FastAPI's `@app.middleware`, which streams every response through
    an extra task and queue: under load that cost is a fifth of the server's time.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.requests import cookie_parser  # noqa: PLC0415  (an optional extra)

        header = next((value for key, value in scope["headers"] if key == b"cookie"), b"")
        token = cookie_parser(header.decode("latin-1")).get(OWNER_COOKIE, "")
        fresh = not re.fullmatch(r"[0-9a-f]{32}", token)
        if fresh:
            token = store.new_id()
        scope.setdefault("state", {})["owner"] = store.owner_key(token)
        if not fresh:
            return await self.app(scope, receive, send)
        cookie = f"{OWNER_COOKIE}={token}; Max-Age={COOKIE_AGE}; Path=/; HttpOnly; SameSite=lax"
        if scope.get("scheme") == "https":
            cookie += "; Secure"

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        return await self.app(scope, receive, send_with_cookie)


class Unauthorized(Exception):
    """An operator-only request without the admin token: HTTP 401."""


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
    parser.add_argument(
        "--db",
        help=f"the avatar store for every theme: a file, or a postgresql:// URL for several servers "
        f"(default: {store.STORE_NAME} in each theme's run folder)",
    )
    parser.add_argument(
        "--admin-token-file",
        type=Path,
        help="a file holding the operator's token; turns on /v1/models/<theme>:predict and /api/admin/... "
        "for requests that send it (Authorization: Bearer <token>); off without it",
    )
    limits = parser.add_argument_group("fair use", "COUNT/PERIOD (second, minute, hour, day), or off")
    limits.add_argument("--generate-limit", default="60/minute", help="new candidates per visitor (default 60/minute)")
    limits.add_argument(
        "--generate-limit-per-address", default="600/minute", help="new candidates per address (default 600/minute)"
    )
    limits.add_argument("--keep-limit", default="10/hour", help="keeps per visitor (default 10/hour)")
    limits.add_argument("--keep-limit-per-address", default="100/hour", help="keeps per address (default 100/hour)")
    cli.add_verbose_argument(parser)
    return parser.parse_args(argv)


def parse_themes(values):
    """[(name, Path)] from NAME=PATH strings (PATH may be a preset: preset:NAME); ConfigError for a
    malformed one or an unknown preset."""
    themes = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--theme {value}: expected NAME=PATH, e.g. digits=runs/mnist5k_cond_gan")
        if slug(name) != name:
            raise ConfigError(f"--theme {value}: the name may hold letters, digits, '_', '.' and '-' only")
        themes.append((name, presets.resolve(path).path if presets.is_handle(path) else Path(path)))
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
    fair_use = FairUse(
        args.generate_limit, args.generate_limit_per_address, args.keep_limit, args.keep_limit_per_address
    )
    folders = {}
    for name, path in parse_themes(args.theme):
        folder = path.resolve()
        if folder in folders:
            raise ConfigError(f"--theme {name}={path}: the folder is already the theme {folders[folder][0]}")
        folders[folder] = name, path
    sources, stores = {}, {}
    for folder, (name, path) in folders.items():
        log.info("loading theme %s from %s", name, path)
        sources[folder] = Source.load(name, path, args.features, args.db, stores)
    return Studio(list(sources.values()), args.min_distance, args.max_draws, fair_use)


def read_admin_token(path):
    """The token in --admin-token-file (at least 16 characters), or None without the flag."""
    if path is None:
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"--admin-token-file {path}: cannot read it ({exc.strerror})") from None
    if len(token) < 16 or not token.isascii() or any(c.isspace() for c in token):
        raise ConfigError(
            f"--admin-token-file {path}: expected one token of at least 16 characters, no spaces "
            "(e.g. python -c 'import secrets; print(secrets.token_hex(16))')"
        )
    return token


def main(argv=None):
    """CLI entry point; returns the exit status (2 for errors the user can fix)."""
    return cli.run(_serve_command, parse_args(argv))


def _serve_command(args):
    try:
        import uvicorn  # noqa: PLC0415
    except ImportError:
        raise ConfigError('tfgen.serve needs FastAPI and uvicorn: pip install -e ".[serve]"') from None
    admin_token = read_admin_token(args.admin_token_file)
    # The server makes many small matrix products from several threads at once; BLAS's own
    # threads only contend with them (measured: 73% of the server's time spinning in OpenBLAS
    # under 50 users). threadpoolctl comes with scikit-learn, a dependency.
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    threadpool_limits(1, user_api="blas")
    # Hand the GIL over every millisecond rather than every 5: a keep or a listing waiting
    # behind a thread that screens candidates answers sooner (p99 of keeps under 50 users).
    sys.setswitchinterval(0.001)
    studio = build_studio(args)
    log.info("%d themes: %s", len(studio.themes), ", ".join(studio.themes))
    log.info(
        "predict and the operator's views are %s",
        "on, for requests with the admin token" if admin_token else "off (no --admin-token-file)",
    )
    log.info("the studio is at http://%s:%d/ (API docs at /docs)", args.host, args.port)
    uvicorn.run(create_app(studio, admin_token), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
