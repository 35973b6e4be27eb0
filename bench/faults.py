"""Fault-injection trials on the real pipeline; prints JSON (every "must be 0" figure must be 0).

- kill -9: the translate flow and the tiny train flow are SIGKILLed at drawn moments (exact file
  operations: commit-marker links, part and checkpoint renames, temporaries opened; and drawn times),
  one or two kills per trial, then re-run to completion and compared with an uninterrupted run;
- torn writes: committed parts of a finished output are truncated, emptied or deleted; the next run
  must re-translate exactly those chunks;
- a flaky S3 endpoint: a proxy answers 20% of requests 503 SlowDown and drops 10%, or has outages
  longer than s3fs's own retries (Prefect's task retries take over) or than every retry (the job
  must fail cleanly and a re-run finish it); translation, training and a promotion are compared with
  fault-free runs.

    python bench/faults.py --trials 10 --seed 1 --out bench/results/faults.json
    python bench/faults.py --trials 2 --skip s3       # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="s2s-faults-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from common import emit  # noqa: E402

PARTS = ("kill-train", "kill-translate", "torn", "s3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per kind (kill, torn)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a temporary one)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    from tests.faults import flaky, trials

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="s2s-faults-"))
    started = time.perf_counter()
    result: dict = {"trials_per_kind": args.trials, "seed": args.seed, "workdir": str(workdir)}
    with prefect_test_harness(server_startup_timeout=120):
        clean_train = workdir / "kill-train" / "clean"
        if "kill-train" in args.skip:
            assert trials.cli(trials.train_args(clean_train)) == 0
        else:
            tally = trials.train_trials(workdir / "kill-train", args.trials, args.seed)
            result["kill_train"] = tally.as_dict()
        (model,) = clean_train.glob("models/tiny/*")
        if "kill-translate" not in args.skip:
            result["kill_translate"] = trials.translate_trials(str(model), workdir / "kill-translate",
                                                               args.trials, args.seed).as_dict()
        if "torn" not in args.skip:
            result["torn_writes"] = trials.torn_trials(str(model), workdir / "torn", args.trials,
                                                       args.seed).as_dict()
        if "s3" not in args.skip:
            weights = hashlib.sha256((model / "model.safetensors").read_bytes()).hexdigest()
            with flaky.moto_endpoint() as endpoint:
                result["s3"] = {**flaky.translation_cases(endpoint, str(model), workdir / "s3", args.seed),
                                **flaky.training_cases(endpoint, weights, args.seed)}
    result["must_be_zero"] = must_be_zero(result)
    result["seconds"] = round(time.perf_counter() - started, 1)
    emit(result, args.out)
    sys.exit(1 if any(result["must_be_zero"].values()) else 0)


def must_be_zero(result: dict) -> dict[str, int]:
    """The figures that say something was lost, duplicated, torn or different from a clean run."""
    totals = {"rows_lost": 0, "rows_duplicated": 0, "mismatches_vs_clean_run": 0, "torn_objects": 0}
    for key in ("kill_train", "kill_translate", "torn_writes"):
        tally = result.get(key) or {}
        totals["rows_lost"] += tally.get("rows_lost", 0)
        totals["rows_duplicated"] += tally.get("rows_duplicated", 0)
        totals["mismatches_vs_clean_run"] += tally.get("mismatches", 0)
        totals["torn_objects"] += tally.get("torn_objects", 0)
    totals["mismatches_vs_clean_run"] += sum(c["mismatches"] for c in result.get("s3", {}).values())
    return totals


if __name__ == "__main__":
    main()
