"""Load-test a running avatar studio with locust: N visitors generate, re-roll, keep, list and
download, for a bounded time; prints requests/s and p50/p99 per endpoint, and errors.

    pip install -e ".[load]"
    tfgen serve --theme digits=runs/mnist5k_cond_gan --generate-limit off --generate-limit-per-address off \\
        --keep-limit off --keep-limit-per-address off &
    python tools/studio_load.py --url http://127.0.0.1:8000 --users 50 --seconds 60 --record kept.jsonl
    python tools/studio_load.py --url http://127.0.0.1:8000 --verify kept.jsonl

Each visitor has its own cookie (its own owner) and loops: a candidate, a re-roll one time in
three, keep, list its avatars, download the kept one at 256 px. With no `--pace` there is no
pause, so the server is as busy as the users can make it (its most requests/s); with `--pace
1`, each user starts a visit once a second, so 50 users ask for 50 keeps/s and the latencies
are those at that rate. The fair-use limits must be off (all visitors share one
address). `--record` writes every keep the server reported (avatar id and the owner's cookie),
so after a crash `--verify` checks that each one is still listed and downloadable by its owner.
"""

import argparse
import json
import random
import sys
import time

import gevent
from locust import FastHttpUser, constant, constant_throughput, events, task  # noqa: I001  (locust patches the standard library first)
from locust.env import Environment

ENDPOINTS = ("POST /api/candidates", "POST /api/keep", "GET /api/me/avatars", "GET /api/avatars/[id].png")


class Visitor(FastHttpUser):
    record = None
    themes = []
    exhausted = 0  # generates answered 409: the theme has no new avatar at this --min-distance
    taken = 0  # keeps answered 409: a look-alike was kept first

    def on_start(self):
        self.client.get("/api/health", name="GET /api/health")  # the owner cookie

    @task
    def visit(self):
        theme = random.choice(self.themes)
        for _ in range(2 if random.random() < 1 / 3 else 1):
            with self.client.post(
                "/api/candidates", json={"theme": theme}, name=ENDPOINTS[0], catch_response=True
            ) as reply:
                if reply.status_code == 409:  # the theme is full at this --min-distance: a correct answer
                    reply.success()
                    Visitor.exhausted += 1
                    return
                if reply.status_code != 200:
                    reply.failure(f"{reply.status_code}: {reply.text[:80]}")
                    return
                candidate = reply.json()["id"]
        with self.client.post(
            "/api/keep", json={"candidate": candidate}, name=ENDPOINTS[1], catch_response=True
        ) as reply:
            if reply.status_code == 409:  # a look-alike kept first: a correct answer, not an error
                reply.success()
                Visitor.taken += 1
                return
            if reply.status_code != 200:
                reply.failure(f"{reply.status_code}: {reply.text[:80]}")
                return
            avatar = reply.json()["avatar"]
        if self.record:
            cookie = self.client.cookiejar.get_dict() if hasattr(self.client.cookiejar, "get_dict") else {}
            cookie = cookie or {c.name: c.value for c in self.client.cookiejar}
            self.record.write(json.dumps({"avatar": avatar, "cookies": cookie}) + "\n")
            self.record.flush()
        self.client.get("/api/me/avatars", name=ENDPOINTS[2])
        self.client.get(f"/api/avatars/{avatar}.png?size=256", name=ENDPOINTS[3])


def load(url, users, seconds, spawn_rate, themes, record, pace=0):
    Visitor.themes, Visitor.record = themes, record
    Visitor.wait_time = constant_throughput(1 / pace) if pace else constant(0)
    env = Environment(user_classes=[Visitor], host=url, events=events)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=spawn_rate)
    gevent.spawn_later(seconds, runner.quit)
    started = time.monotonic()
    runner.greenlet.join()
    elapsed = time.monotonic() - started
    rows = []
    for name in ENDPOINTS:
        entry = env.stats.entries.get((name.split(" ", 1)[1], name.split(" ", 1)[0]))
        if entry is None:
            entry = next((e for (n, _), e in env.stats.entries.items() if n == name), None)
        if entry is None or not entry.num_requests:
            continue
        rows.append(
            {
                "endpoint": name,
                "requests": entry.num_requests,
                "per_second": entry.num_requests / elapsed,
                "p50_ms": entry.get_response_time_percentile(0.5),
                "p99_ms": entry.get_response_time_percentile(0.99),
                "errors": entry.num_failures,
            }
        )
    total = env.stats.total
    errors = {f"{e.method} {e.name}: {e.error}": e.occurrences for e in env.stats.errors.values()}
    keeps = next((row["requests"] for row in rows if row["endpoint"] == ENDPOINTS[1]), 0)
    return {
        "users": users,
        "seconds": round(elapsed, 1),
        "requests_per_second": round(total.num_requests / elapsed, 1),
        "keeps_per_second": round((keeps - Visitor.taken) / elapsed, 1),
        "generates_409_exhausted": Visitor.exhausted,
        "keeps_409_look_alike": Visitor.taken,
        "endpoints": rows,
        "errors": errors,
    }


def verify(url, record_path):
    """Every recorded keep is listed and downloadable by its owner: (checked, missing)."""
    import urllib.request  # noqa: PLC0415

    checked, missing = 0, []
    for line in open(record_path):
        if not line.strip():
            continue
        kept = json.loads(line)
        cookie = "; ".join(f"{k}={v}" for k, v in kept["cookies"].items())

        def get(path, cookie=cookie):
            request = urllib.request.Request(url + path, headers={"Cookie": cookie})
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as exc:
                return exc.code, b""

        status, body = get("/api/me/avatars")
        listed = status == 200 and kept["avatar"] in {a["avatar"] for a in json.loads(body)["avatars"]}
        status, png = get(f"/api/avatars/{kept['avatar']}.png")
        if not (listed and status == 200 and png.startswith(b"\x89PNG")):
            missing.append(kept["avatar"])
        checked += 1
    return checked, missing


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60, help="how long to run (bounded)")
    parser.add_argument("--spawn-rate", type=float, default=25, help="users started per second")
    parser.add_argument(
        "--pace",
        type=float,
        default=0,
        help="each user starts a visit (generate, keep, list, download) at most every PACE seconds; "
        "0 (default): no pause, as fast as the server answers",
    )
    parser.add_argument("--theme", action="append", help="theme ids to use (default: all)")
    parser.add_argument("--record", help="append every reported keep (avatar id, owner cookie) to this JSONL file")
    parser.add_argument("--verify", help="check that every keep recorded in this file is there (no load)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)

    if args.verify:
        checked, missing = verify(args.url, args.verify)
        print(f"{checked} recorded keeps checked: {checked - len(missing)} listed and downloadable by their owner")
        for avatar in missing:
            print(f"MISSING {avatar}")
        return 1 if missing or not checked else 0

    import urllib.request  # noqa: PLC0415

    with urllib.request.urlopen(f"{args.url}/api/themes", timeout=60) as response:
        themes = args.theme or [t["id"] for t in json.load(response)["themes"]]
    record = open(args.record, "a") if args.record else None
    try:
        result = load(args.url, args.users, args.seconds, args.spawn_rate, themes, record, args.pace)
        result["pace"] = args.pace
    finally:
        if record:
            record.close()
    print(
        f"{result['users']} users for {result['seconds']} s: {result['requests_per_second']} requests/s, "
        f"{result['keeps_per_second']} keeps/s; 409s: {result['generates_409_exhausted']} generates (theme full), "
        f"{result['keeps_409_look_alike']} keeps (look-alike kept first)"
    )
    print(f"{'endpoint':<28} {'requests':>9} {'per s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>7}")
    for row in result["endpoints"]:
        print(
            f"{row['endpoint']:<28} {row['requests']:>9} {row['per_second']:>7.1f} {row['p50_ms']:>7.0f} "
            f"{row['p99_ms']:>7.0f} {row['errors']:>7}"
        )
    for error, count in result["errors"].items():
        print(f"error x{count}: {error}")
    if args.out:
        with open(args.out, "w") as out:
            json.dump(result, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
