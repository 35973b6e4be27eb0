"""Warm-started retrain vs training from scratch on a grown corpus (issue 19). Prints JSON.

The weekly retrain sees last week's corpus plus new text. Here: a champion is trained on the Bible
train split without some held-back books; then two challengers train on the whole split with the
same budget, one from scratch and one warm-started from the champion (``train.init_from``). From
each run's history: the minutes to reach the champion's best dev BLEU, the best dev BLEU, and the
test BLEU/chrF its evaluation reports. Every step runs the ``s2s`` command, as a user would.

    python bench/warm_start.py --champion-minutes 30 --challenger-minutes 15 \\
        --out bench/results/warm-start-cpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from common import emit, load_average

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "bible-es-en"
HELD_BACK = ("Matthew", "Mark", "Luke", "John", "Acts")  # the "new books" of the grown corpus


def book(verse_id: str) -> str:
    return verse_id.rsplit(" ", 1)[0]  # "II Samuel 1:3" -> "II Samuel"


def train(store: Path, run_id: str, train_url: Path, minutes: float, extra: list[str]) -> dict:
    """``s2s train`` on the Bible config; the run's JSON summary, history and wall time."""
    command = [sys.executable, "-m", "flows.cli", "train", str(ROOT / "configs/bible-es-en.yaml"),
               "--store", str(store), "--run-id", run_id, "--set", f"data.train={train_url}",
               "--set", f"data.dev={DATA / 'dev.parquet'}", "--set", f"train.max_minutes={minutes}",
               "--set", "evaluate.n_bootstrap=200", "--set", "evaluate.heatmaps=0"]
    for setting in extra:
        command += ["--set", setting]
    started = time.monotonic()
    process = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if process.returncode != 0:
        raise RuntimeError(f"{run_id} failed:\n{process.stderr[-3000:]}")
    summary = json.loads(process.stdout)
    history = [json.loads(line) for line in
               Path(summary["run"], "logs", "train.jsonl").read_text().splitlines() if line.strip()]
    return {"summary": summary, "history": history, "wall_seconds": round(time.monotonic() - started, 1)}


def curve(history: list[dict]) -> list[tuple[float, float]]:
    """(minutes spent, dev BLEU) of each evaluation of the live weights."""
    return [(round(r["elapsed_seconds"] / 60, 2), r["dev_bleu"]) for r in history
            if "dev_bleu" in r and r.get("weights") != "average"]


def minutes_to(points: list[tuple[float, float]], bleu: float) -> float | None:
    return next((minutes for minutes, score in points if score >= bleu), None)


def describe(run: dict, champion_bleu: float) -> dict:
    points = curve(run["history"])
    scores = run["summary"]["scores"]["test"]
    return {"model": run["summary"]["model"], "wall_seconds": run["wall_seconds"],
            "steps": max((r["step"] for r in run["history"]), default=0),
            "best_dev_bleu": max((s for _, s in points), default=None),
            "minutes_to_champion_dev_bleu": minutes_to(points, champion_bleu),
            "test_bleu": scores["bleu"], "test_chrf": scores["chrf"], "dev_curve": points}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--champion-minutes", type=float, default=30)
    parser.add_argument("--challenger-minutes", type=float, default=15)
    parser.add_argument("--held-back", default=",".join(HELD_BACK),
                        help="books left out of the champion's data (comma-separated)")
    parser.add_argument("--warm-set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra settings of the warm-started run only, e.g. train.lr=0.001")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/s2s-warm-start"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    held = set(args.held_back.split(","))
    args.workdir.mkdir(parents=True, exist_ok=True)
    full = pl.read_parquet(DATA / "train.parquet")
    old = full.filter(~pl.col("id").map_elements(book, return_dtype=pl.Utf8).is_in(held))
    old_url = args.workdir / "train-old.parquet"
    old.write_parquet(old_url)
    store = args.workdir / "store"
    result: dict = {"benchmark": "warm_start", "held_back": sorted(held), "rows_old": old.height,
                    "rows_new": full.height, "load_before": load_average()}
    champion = train(store, "champion", old_url, args.champion_minutes, [])
    champion_bleu = max(s for _, s in curve(champion["history"]))
    result["champion"] = describe(champion, champion_bleu)
    result["scratch"] = describe(train(store, "scratch", DATA / "train.parquet", args.challenger_minutes, []),
                                 champion_bleu)
    warm = train(store, "warm", DATA / "train.parquet", args.challenger_minutes,
                 [f"train.init_from={champion['summary']['model']}", *args.warm_set])
    result["warm"] = describe(warm, champion_bleu) | {"settings": args.warm_set}
    result["load_after"] = load_average()
    emit(result, args.out)


if __name__ == "__main__":
    main()
