"""Fire many concurrent Keep requests at a running avatar studio and check its store.

    tfgen serve --theme digits=runs/mnist5k_cond_gan --keep-limit off --keep-limit-per-address off &
    python tools/keep_storm.py --url http://127.0.0.1:8000 --theme digits-3 --num 60 \\
        --db runs/mnist5k_cond_gan/avatars.db --source mnist5k_cond_gan

Draws `--num` candidates first, as one visitor (one owner cookie), so look-alikes among them
race each other; keeps them all at once from `--num` threads; then reports the answers, the
store's growth and the smallest distance between any two kept avatars of the source, which
must exceed the server's --min-distance. Exit status 1 if the successes and the store's
growth disagree or two kept avatars are too close. The server's keep limits must allow
`--num` keeps from one visitor and address.
"""

import argparse
import concurrent.futures
import json
import sys
import urllib.error
import urllib.request

import numpy as np

from tfgen import store


def request(url, cookie, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if cookie:
        headers["Cookie"] = cookie
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=120) as response:
            return response.status, json.load(response), response.headers.get("Set-Cookie")
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc), None


def kept_features(db, source):
    _, features = store.Store(db).rows_since(source, 0)
    return np.zeros((0, 0)) if features is None else features.astype(np.float64)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--theme", required=True, help="a theme id from /api/themes")
    parser.add_argument("--num", type=int, default=60, help="concurrent keeps (default 60)")
    parser.add_argument("--db", required=True, help="the server's store: its --db, or <run>/avatars.db")
    parser.add_argument("--source", required=True, help="the name the theme's avatars are filed under (its folder's)")
    args = parser.parse_args(argv)

    _, themes, set_cookie = request(f"{args.url}/api/themes", None)
    min_distance = themes["min_distance"]
    cookie = set_cookie.split(";", 1)[0]  # one visitor throughout
    before = len(kept_features(args.db, args.source))
    candidates = []
    for _ in range(args.num):
        status, body, _ = request(f"{args.url}/api/candidates", cookie, {"theme": args.theme})
        if status != 200:
            sys.exit(f"generate: {status} {body}")
        candidates.append(body["id"])
    with concurrent.futures.ThreadPoolExecutor(args.num) as pool:
        answers = list(pool.map(lambda c: request(f"{args.url}/api/keep", cookie, {"candidate": c}), candidates))
    statuses = [status for status, *_ in answers]
    kept = sum(status == 200 for status in statuses)
    features = kept_features(args.db, args.source)
    grown = len(features) - before
    squared = np.sum(features**2, 1)
    d2 = squared[:, None] + squared[None, :] - 2 * features @ features.T
    np.fill_diagonal(d2, np.inf)
    closest = float(np.sqrt(max(d2.min(), 0))) if len(features) > 1 else float("inf")
    print(
        f"{args.num} keeps: {kept} kept, {statuses.count(409)} refused as look-alikes (409), "
        f"{len(statuses) - kept - statuses.count(409)} other; the store grew by {grown} to {len(features)}"
    )
    print(f"closest two kept avatars: {closest:.4f} (--min-distance {min_distance})")
    ok = grown == kept and closest > min_distance
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
