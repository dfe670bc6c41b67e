"""`tfgen sweep --config X.yaml --grid model.latent_dim=32,64 --grid train.learning_rate=1e-4,2e-4`

Trains every combination of the grid values one after another, scores each with
`tfgen.evaluate`, and writes `results.md` and `results.html` in `<run_dir>/sweeps/<name>/`:
one row per run with its parameters, metrics, training time and a thumbnail of its last
sample grid, best first. Each run trains in its own process, so a run that fails (a bad
value, an out-of-memory error) becomes a row with its error instead of ending the sweep.
Resumable: runs already trained and scored are read back, not repeated.

Alternatives that are not one key's values go in as `--variant`s, each a set of overrides
(`--variant model.top_k=true --variant model.g_threshold=0.25,model.g_threshold_rule=soft`;
an empty `--variant ""` is the plain config), and several `--config`s compare models; every
config x variant x grid combination runs. For comparisons at equal wall time, give each run
the same `--set train.time_budget_minutes=M` (and epochs to spare).
"""

import argparse
import html
import itertools
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from tfgen import cli, images, metrics, scoring
from tfgen.config import load_config, resolve_config_path
from tfgen.errors import ConfigError
from tfgen.files import write_text

log = cli.log


def parse_grid(items):
    """["model.latent_dim=32,64"] -> [("model.latent_dim", ["32", "64"])].

    Values that hold commas themselves (a DiffAugment policy) are separated by "|" instead:
    "model.diffaugment=color|color,translation".
    """
    grid = []
    for item in items:
        key, sep, values = item.partition("=")
        choices = [v.strip() for v in values.split("|" if "|" in values else ",") if v.strip()]
        if not sep or not key or not choices:
            raise ConfigError(
                f"--grid {item!r}: expected section.key=value1,value2,... (or value1|value2|... "
                "when the values hold commas)"
            )
        grid.append((key, choices))
    return grid


def parse_variant(item):
    """ "model.top_k=true,model.top_k_min=0.25" -> [("model.top_k", "true"), ...]; "" -> [].

    A comma starts a new setting only before a `key=`, so a value may hold commas:
    "model.diffaugment=color,translation" is one setting.
    """
    settings = []
    for part in filter(None, (p.strip() for p in re.split(r",(?=\s*[A-Za-z_][\w.]*=)", item))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ConfigError(f"--variant {item!r}: expected section.key=value[,section.key=value ...]")
        settings.append((key, value))
    return settings


def run_name(base, combination):
    """A run name made of the config name and the grid values, safe as a folder name."""
    parts = [base] + [f"{key.split('.')[-1]}-{value}" for key, value in combination]
    return re.sub(r"[^A-Za-z0-9._-]", "_", "__".join(parts))


def train_run(config, sets, combination, name, sweep_dir):
    """Train one combination in a subprocess; (seconds, error or None). Log in <name>.log."""
    command = [sys.executable, "-m", "tfgen.train", "--config", str(config), "--overwrite"]
    for item in [*sets, *(f"{k}={v}" for k, v in combination), f"name={name}", f"run_dir={sweep_dir}"]:
        command += ["--set", item]
    log_path = sweep_dir / f"{name}.log"
    start = time.time()
    with open(log_path, "w") as log_file:
        code = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT).returncode
    seconds = time.time() - start
    if code == 0:
        return seconds, None
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("tfgen: error:") or "Error" in line]
    return seconds, (errors or lines or [f"exit status {code}"])[-1]


def thumbnail(run, sweep_dir, name, width=160):
    """A small copy of the run's last sample grid in sweep_dir/thumbs/; its relative path or None."""
    grids = images.epoch_grids(run / "samples")
    if not grids:
        return None
    image = Image.open(grids[max(grids)])
    image.thumbnail((width, width * image.height // image.width + 1))
    path = sweep_dir / "thumbs" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    image.save(path)
    return f"thumbs/{name}.png"


def sweep(args):
    """Run the sweep described by the parsed CLI arguments; returns the rows, best first."""
    configs = [resolve_config_path(c) for c in args.config]
    grid = parse_grid(args.grid)
    variants = [parse_variant(v) for v in args.variant] or [[]]
    if not grid and not args.variant and len(configs) < 2:
        raise ConfigError("nothing to compare: give --grid, --variant or several --config")
    try:
        names = metrics.parse_metric_names(args.metric)
    except ValueError as exc:
        raise ConfigError(f"--metric: {exc}") from None
    bases = [load_config(str(c), args.set) for c in configs]
    values = list(itertools.product(*[v for _, v in grid]))
    jobs = [
        (config, base, [*variant, *zip([k for k, _ in grid], combo)])
        for config, base in zip(configs, bases)
        for variant in variants
        for combo in values
    ]
    for config, _, combination in jobs:  # every combination must be a valid config before any training
        overrides = [f"{k}={v}" for k, v in combination]
        try:
            load_config(str(config), [*args.set, *overrides])
        except ConfigError as exc:
            raise ConfigError(
                f"the sweep's run of {Path(config).name} with {', '.join(overrides) or 'no changes'} "
                f"(--grid / --variant values become --set overrides): {exc}"
            ) from None
    title = args.name or "_vs_".join(b.name for b in bases)
    sweep_dir = Path(bases[0].run_dir) / "sweeps" / title
    sweep_dir.mkdir(parents=True, exist_ok=True)

    rows = []
    for index, (config, base, combination) in enumerate(jobs, 1):
        name = run_name(base.name, combination)
        run = sweep_dir / name
        record_path = run / "sweep.json"
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        settings = {"set": args.set, "metric": args.metric, "num": args.num, "extractor": args.extractor}
        if record.get("error") is None and "metrics" in record and record.get("settings") == settings:
            log.info("run %d/%d: %s already done", index, len(jobs), name)
        else:
            log.info("run %d/%d: training %s", index, len(jobs), name)
            seconds, error = train_run(config, args.set, combination, name, sweep_dir)
            record = {
                "name": name,
                "params": dict(combination),
                "settings": settings,
                "train_seconds": seconds,
                "error": error,
            }
            if error is None:
                try:
                    record["metrics"] = scoring.evaluate_run(run, names, args.num, args.extractor)
                except Exception as exc:  # noqa: BLE001  (a row with its error, not the end of the sweep)
                    record["error"] = f"evaluation failed: {type(exc).__name__}: {exc}"
            run.mkdir(parents=True, exist_ok=True)
            write_text(record_path, json.dumps(record, indent=2))
            if record["error"]:
                log.warning("run %s failed: %s", name, record["error"])
        record["model"] = base.model.name
        record["thumbnail"] = thumbnail(run, sweep_dir, name) if run.is_dir() else None
        rows.append(record)

    reported = metrics.reported_metrics(names)
    key = reported[0]  # the first metric ranks
    lower = metrics.LOWER_IS_BETTER[key]
    # failed runs last, then runs without the ranking metric (a model that does not sample has
    # no FID), then by the metric
    rows.sort(
        key=lambda r: (
            r["error"] is not None,
            key not in r.get("metrics", {}),
            (1 if lower else -1) * r.get("metrics", {}).get(key, 0),
        )
    )
    columns = list(dict.fromkeys(k for row in rows for k in row["params"]))
    if len(configs) > 1:
        columns = ["model", *columns]
    markdown = results_markdown(rows, columns, reported, title)
    write_text(sweep_dir / "results.md", markdown)
    write_text(sweep_dir / "results.html", results_html(rows, columns, reported, title))
    print(markdown)
    print(f"written: {sweep_dir / 'results.md'} and {sweep_dir / 'results.html'}")
    return rows


def _cells(row, columns, reported):
    values = [row["model"] if c == "model" else row["params"].get(c, "") for c in columns]
    found = row.get("metrics", {})
    for name in reported:
        if name in found:
            values.append(f"{found[name]:.4g}" + (f" ± {found[name + '_std']:.2g}" if name + "_std" in found else ""))
        else:
            values.append("—")
    values.append(f"{row['train_seconds']:.0f} s")
    return values


def results_markdown(rows, columns, reported, title):
    """The results table in Markdown, thumbnails as image links."""
    header = ["#", "run", *columns, *reported, "train time", "samples", "error"]
    lines = [f"# Sweep: {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, row in enumerate(rows, 1):
        image = f"![samples]({row['thumbnail']})" if row.get("thumbnail") else ""
        error = (row["error"] or "").replace("|", "\\|")
        lines.append("| " + " | ".join([str(rank), row["name"], *_cells(row, columns, reported), image, error]) + " |")
    return "\n".join(lines) + "\n"


def results_html(rows, columns, reported, title):
    """The results table as a standalone HTML page, thumbnails inline."""
    header = ["#", "run", *columns, *reported, "train time", "samples", "error"]
    body = []
    for rank, row in enumerate(rows, 1):
        image = f'<img src="{html.escape(row["thumbnail"])}" alt="samples">' if row.get("thumbnail") else ""
        cells = [str(rank), row["name"], *_cells(row, columns, reported)]
        tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        body.append(
            f'<tr class="{"failed" if row["error"] else "ok"}">{tds}<td>{image}</td>'
            f"<td>{html.escape(row['error'] or '')}</td></tr>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Sweep: {html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; vertical-align: middle; }}
th {{ background: #f0f0f0; }}
tr.failed td {{ background: #fde8e8; }}
img {{ image-rendering: pixelated; }}
</style></head><body>
<h1>Sweep: {html.escape(title)}</h1>
<p>Best first (by {html.escape(reported[0])}). Metrics from <code>tfgen.evaluate</code>.</p>
<table>
<tr>{"".join(f"<th>{html.escape(h)}</th>" for h in header)}</tr>
{chr(10).join(body)}
</table></body></html>
"""


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tfgen sweep", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", action="append", required=True, help="a config (repeatable: every config runs every combination)"
    )
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a config key and its values (repeatable; every combination runs)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=V[,KEY=V...]",
        help='one alternative as a set of overrides (repeatable; "" is the config as it is)',
    )
    parser.add_argument("--name", help="the sweep's folder name (default: the config names)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fixed overrides")
    parser.add_argument(
        "--metric", default="fid", help=f"comma-separated, the first ranks: {', '.join(metrics.METRIC_NAMES)}"
    )
    parser.add_argument("--num", type=int, default=2000, help="samples per evaluation")
    parser.add_argument("--extractor", default="classifier", choices=metrics.EXTRACTORS)
    cli.add_verbose_argument(parser)
    return cli.run(_sweep_command, parser.parse_args(argv))


def _sweep_command(args):
    sweep(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
