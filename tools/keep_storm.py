"""Fire many concurrent Keep requests at a running avatar studio and check its ledger.

    tfgen serve --theme digits=runs/mnist5k_cond_gan &
    python tools/keep_storm.py --url http://127.0.0.1:8000 --theme digits-3 --num 60 \
        --ledger runs/mnist5k_cond_gan/issued.npz

Draws `--num` candidates first (so look-alikes among them race each other), keeps them all at
once from `--num` threads, then reports the answers, the ledger's growth and the smallest
distance between any two kept avatars, which must exceed the server's --min-distance.
Exit status 1 if the successes and the ledger's growth disagree or two kept avatars are too close.
"""

import argparse
import concurrent.futures
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np


def post(url, body):
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def ledger_rows(path):
    if not path.exists():
        return np.zeros((0, 0))
    with np.load(path) as stored:
        return stored["features"].astype(np.float64)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--theme", required=True, help="a theme id from /api/themes")
    parser.add_argument("--num", type=int, default=60, help="concurrent keeps (default 60)")
    parser.add_argument("--ledger", type=Path, required=True, help="the run's issued.npz, as the server writes it")
    args = parser.parse_args(argv)

    with urllib.request.urlopen(f"{args.url}/api/themes") as response:
        min_distance = json.load(response)["min_distance"]
    before = len(ledger_rows(args.ledger))
    candidates = []
    for _ in range(args.num):
        status, body = post(f"{args.url}/api/candidates", {"theme": args.theme})
        if status != 200:
            sys.exit(f"generate: {status} {body}")
        candidates.append(body["id"])
    with concurrent.futures.ThreadPoolExecutor(args.num) as pool:
        answers = list(pool.map(lambda c: post(f"{args.url}/api/keep", {"candidate": c}), candidates))
    statuses = [status for status, _ in answers]
    kept = sum(status == 200 for status in statuses)
    features = ledger_rows(args.ledger)
    grown = len(features) - before
    squared = np.sum(features**2, 1)
    d2 = squared[:, None] + squared[None, :] - 2 * features @ features.T
    np.fill_diagonal(d2, np.inf)
    closest = float(np.sqrt(max(d2.min(), 0))) if len(features) > 1 else float("inf")
    print(
        f"{args.num} keeps: {kept} kept, {statuses.count(409)} refused as look-alikes (409), "
        f"{len(statuses) - kept - statuses.count(409)} other; the ledger grew by {grown} to {len(features)}"
    )
    print(f"closest two kept avatars: {closest:.4f} (--min-distance {min_distance})")
    ok = grown == kept and closest > min_distance
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
