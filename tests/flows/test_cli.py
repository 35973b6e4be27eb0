import json

import pytest

from flows.cli import main
from tests.flows.conftest import ROOT, TINY


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("s2s: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_missing_config_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", str(tmp_path / "missing.yaml"))
    assert code == 2 and "config file not found" in one_line_error(err)


def test_bad_config_value_names_the_field(capsys):
    code, _, err = run_cli(capsys, "train", str(TINY), "--set", "train.max_tokens=lots")
    assert code == 2 and "train.max_tokens: Input should be a valid integer" in one_line_error(err)


def test_missing_training_data(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", str(TINY), "--set", f"data.train={tmp_path}/nope.tsv")
    assert code == 2 and "training data not found" in one_line_error(err)


def test_bad_store_url(capsys):
    code, _, err = run_cli(capsys, "train", str(TINY), "--store", "nosuchproto://bucket/x")
    assert code == 2 and "is not a usable URL" in one_line_error(err)


def test_evaluate_a_missing_model_package(capsys, tmp_path):
    test = ROOT / "examples/tiny/pairs.tsv"
    code, _, err = run_cli(capsys, "evaluate", "--model", str(tmp_path / "no-model"), "--test", str(test),
                           "--report", str(tmp_path / "r"))
    assert code == 2 and "no model package at" in one_line_error(err)


def test_evaluate_with_a_bad_column(capsys, tiny_run, tmp_path):
    _, result = tiny_run
    code, _, err = run_cli(capsys, "evaluate", "--model", result["model"], "--test",
                           str(ROOT / "examples/tiny/pairs.tsv"), "--src-column", "spanish",
                           "--report", str(tmp_path / "r"))
    assert code == 2 and "missing column 'spanish'" in one_line_error(err)


def test_evaluate_writes_a_report(capsys, tiny_run, tmp_path):
    config, result = tiny_run
    test = f"{result['run']}/data/test.parquet"
    code, out, _ = run_cli(capsys, "evaluate", "--model", result["model"], "--test", test,
                           "--report", str(tmp_path / "report"), "--beam", "1", "--bootstrap", "20")
    assert code == 0
    scores = json.loads(out[: out.index("\nreport:")])
    assert set(scores["test"]) == {"bleu", "chrf", "ter"}
    report = json.loads((tmp_path / "report/report.json").read_text())
    assert report["test_sets"]["test"]["decode"]["beam_size"] == 1
    assert "bs:20" in report["test_sets"]["test"]["scores"]["bleu"]["signature"]
    assert (tmp_path / "report/test.translations.parquet").exists()


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "train" in out and "evaluate" in out
