import json
import os
import subprocess
import sys
import tomllib

import pytest

from flows import cli
from flows.cli import _storage_options, main
from s2s_core import __version__
from tests.flows.conftest import FAST, ROOT, TINY


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
    code, out, err = run_cli(capsys, "evaluate", "--model", result["model"], "--test", test,
                             "--report", str(tmp_path / "report"), "--beam", "1", "--bootstrap", "20")
    assert code == 0
    summary = json.loads(out)  # stdout is JSON only; the human line goes to stderr
    assert summary["markdown"] == str(tmp_path / "report/report.md") and "report: " in err
    scores = summary["scores"]
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


def test_help_and_version_import_neither_torch_nor_prefect():
    """`s2s --help` must answer at once: the heavy imports belong to the commands that need them."""
    code = ("import sys\nfrom flows.cli import main\n"
            "for argv in (['--help'], ['translate', '--help'], ['--version']):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, e.code\n"
            "print('LOADED', sorted({'torch', 'prefect'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "LOADED []"
    assert f"s2s {__version__}" in out.stdout
    assert "(default: 5)" in out.stdout and "exit codes:" in out.stdout and "PREFECT_API_URL" in out.stdout


@pytest.mark.parametrize("command", ["train", "retrain", "evaluate", "translate"])
def test_every_command_has_an_example(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert f"examples:\n  s2s {command} " in capsys.readouterr().out


def test_storage_options_are_parsed_like_set_values():
    assert _storage_options(["anon=false", "endpoint_url=http://127.0.0.1:9000",
                             "client_kwargs.region_name=eu", "default_block_size=5242880"]) == {
        "anon": False, "endpoint_url": "http://127.0.0.1:9000", "client_kwargs": {"region_name": "eu"},
        "default_block_size": 5242880}


def test_a_storage_option_without_a_value_is_a_user_error(capsys):
    code, _, err = run_cli(capsys, "evaluate", "--model", "m", "--test", "t", "--storage-option", "anon")
    assert code == 2 and "--storage-option expects key=value" in one_line_error(err)


def test_an_internal_error_keeps_its_traceback(monkeypatch, capsys):
    """A bug (here a KeyError inside a command) is not reported as the user's fault."""
    def buggy(args):
        return {}["missing"]

    monkeypatch.setattr(cli, "cmd_train", buggy)
    with pytest.raises(KeyError, match="missing"):
        main(["train", str(TINY)])
    assert "s2s: error" not in capsys.readouterr().err


def test_the_cli_sets_the_projects_prefect_settings(monkeypatch):
    """prefect.toml (for processes started in the repository) and the CLI's defaults agree."""
    settings = tomllib.loads((ROOT / "prefect.toml").read_text())
    from_toml = {f"PREFECT_{section}_{key}".upper(): str(value).lower()
                 for section, values in settings.items() for key, value in values.items()}
    assert from_toml == {k: v.lower() for k, v in cli.PREFECT_DEFAULTS.items() if k.startswith("PREFECT_")}
    for name in cli.PREFECT_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    cli.configure_logging(verbose=0, quiet=0)
    assert {name: os.environ[name] for name in cli.PREFECT_DEFAULTS} == cli.PREFECT_DEFAULTS


def test_a_rejected_challenger_exits_4_with_the_decision_as_json(capsys, prefect_harness, tmp_path):
    """The tiny model misses the quality gate (BLEU ≥ 5): retrain finishes, the champion (none) stays."""
    settings = [*FAST, f"data.train={ROOT / 'examples/tiny/pairs.tsv'}", "train.max_steps=5",
                "train.eval_every=5"]
    overrides = [x for item in settings for x in ("--set", item)]
    code, out, err = run_cli(capsys, "retrain", str(TINY), "--store", str(tmp_path / "store"), *overrides)
    decision = json.loads(out)
    assert code == cli.EXIT_REJECTED == 4
    assert decision["decision"] == "rejected" and "quality gate" in decision["reason"]
    assert decision["champion"] is None and "rejected: " in err


def test_translate_a_corpus_in_bf16_pins_it_and_keeps_its_own_memory(capsys, tiny_run, tmp_path):
    """--precision end to end on Parquet: recorded in the manifest, pinned in the plan (a re-run in
    another precision is refused, one line, exit 2), and a memory namespace of its own."""
    from tests.flows.test_translate_flow import bible_corpus

    _, trained = tiny_run
    corpus = bible_corpus(tmp_path / "in", 40)
    args = ["translate", "--model", trained["model"], "--input", str(corpus), "--chunk-rows", "20",
            "--beam", "1", "--workers", "1", "--device", "cpu"]
    code, out, _ = run_cli(capsys, *args, "--output", str(tmp_path / "bf16"), "--precision", "bf16")
    assert code == 0 and json.loads(out)["statuses"] == {"ok": 40}
    manifest = json.loads((tmp_path / "bf16" / "manifest.json").read_text())
    assert manifest["precision"] == "bf16"
    assert manifest["numerics"] == {"device": "cpu", "amp": "bfloat16", "quantization": "none"}
    plan = json.loads((tmp_path / "bf16" / "_plan.json").read_text())
    assert plan["precision"] == "bf16" and plan["numerics"] == manifest["numerics"]

    code, _, err = run_cli(capsys, *args, "--output", str(tmp_path / "bf16"))  # the default: fp32
    assert code == 2
    assert "different numerics (pinned bf16" in one_line_error(err) and "now fp32" in err
    assert "use a new --output" in err

    # fp32 into a new output next to it: the shared memory holds nothing for fp32 yet.
    code, out, _ = run_cli(capsys, *args, "--output", str(tmp_path / "fp32"))
    assert code == 0 and json.loads(out)["this_run"]["memory"]["hits"] == 0
    records = (tmp_path / "_memory").glob("*/_namespace.json")
    namespaces = [json.loads(p.read_text())["keyed_by"] for p in records]
    assert sorted(ns["numerics"]["amp"] for ns in namespaces) == ["bfloat16", "none"]
    code, out, _ = run_cli(capsys, *args, "--output", str(tmp_path / "bf16-again"), "--precision", "bf16")
    assert code == 0 and json.loads(out)["this_run"]["memory"]["hits"] == 40  # its own namespace


def test_evaluate_in_int8_records_the_precision_in_the_report(capsys, tiny_run, tmp_path):
    _, result = tiny_run
    test = f"{result['run']}/data/test.parquet"
    code, out, _ = run_cli(capsys, "evaluate", "--model", result["model"], "--test", test, "--report",
                           str(tmp_path / "report"), "--beam", "1", "--bootstrap", "20",
                           "--precision", "int8")
    assert code == 0 and set(json.loads(out)["scores"]["test"]) == {"bleu", "chrf", "ter"}
    report = json.loads((tmp_path / "report/report.json").read_text())
    assert report["test_sets"]["test"]["precision"] == "int8"
    assert report["inputs"]["settings"]["precision"] == "int8"
    assert "Precision: int8" in (tmp_path / "report/report.md").read_text()


def test_a_precision_the_cli_does_not_know_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["translate", "--model", "m", "--precision", "fp16"])
    assert exit_info.value.code == 2
    assert "argument --precision: invalid choice: 'fp16'" in capsys.readouterr().err
