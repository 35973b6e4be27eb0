"""`s2s translate` on plain text: stdin/stdout and files, one output line per input line, no Prefect."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

from flows.cli import main
from tests.flows.conftest import ROOT

LINES = ["Y dijo Dios: Sea la luz.", "", "Y fue la luz.", "   ", "Y dijo Dios: Sea la luz.", "😀",
         " ".join(["Y vio Dios que la luz era buena."] * 12),  # over the tiny model's 128 source tokens
         "en el principio\u2028creó Dios"]  # U+2028 is text, not a line break


def run_s2s(args: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    """``s2s ARGS < stdin`` in a fresh interpreter that reports whether Prefect was imported."""
    code = ("import sys\nfrom flows.cli import main\ncode = main(sys.argv[1:])\n"
            "print('PREFECT IMPORTED' if 'prefect' in sys.modules else 'NO PREFECT', file=sys.stderr)\n"
            "sys.exit(code)")
    return subprocess.run([sys.executable, "-c", code, *args], input=stdin, capture_output=True, cwd=ROOT,
                          timeout=300)


def test_stdin_to_stdout_one_line_per_line_without_prefect(tiny_run):
    _, trained = tiny_run
    text = "\n".join(LINES) + "\n"
    result = run_s2s(["translate", "--model", trained["model"], "--beam", "2", "--device", "cpu"],
                     text.encode())
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode().split("\n")
    assert out[-1] == "" and len(out) - 1 == len(LINES)
    assert out[1] == out[3] == "" and out[0] and out[2] and out[0] == out[4]
    assert "NO PREFECT" in result.stderr.decode()


def test_files_n_best_and_windows(tiny_run, tmp_path, capsys):
    _, trained = tiny_run
    source = tmp_path / "src.txt.gz"
    source.write_bytes(gzip.compress(("\n".join(LINES) + "\n").encode()))
    base = ["translate", "--model", trained["model"], "--input", str(source), "--device", "cpu"]

    assert main([*base, "--output", str(tmp_path / "hyp.txt"), "--beam", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)  # stdout holds the JSON summary only
    assert summary["lines"] == len(LINES) and summary["statuses"]["empty"] == 2
    assert summary["segments"] >= len(LINES) - 2 + 11  # the long line went in as 12 sentences
    hyps = (tmp_path / "hyp.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(hyps) == len(LINES)

    # Windows change memory, not output (hypotheses do not depend on batch composition).
    assert main([*base, "--output", str(tmp_path / "hyp-w2.txt"), "--beam", "2", "--window", "2"]) == 0
    assert (tmp_path / "hyp-w2.txt").read_text(encoding="utf-8").split("\n")[:-1] == hyps
    capsys.readouterr()

    assert main([*base, "--output", str(tmp_path / "nbest.txt"), "--beam", "3", "--n-best", "3"]) == 0
    lines = (tmp_path / "nbest.txt").read_text(encoding="utf-8").splitlines()
    entries = [line.split(" ||| ") for line in lines]  # index ||| hypothesis ||| score
    assert all(len(e) == 3 and float(e[2]) <= 0 for e in entries)
    indices = [int(e[0]) for e in entries]
    assert indices == sorted(indices) and set(indices) == set(range(len(LINES)))
    assert [e[1] for e in entries if e[0] == "1"] == [""]  # an empty line: one empty hypothesis
    assert len([e for e in entries if e[0] == "0"]) == 3


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_stdin_in_reduced_precision_one_line_per_line_without_noise(tiny_run, precision):
    """--precision on the text path: every line translated, the summary says how, and loading torchao
    (int8) adds nothing to stderr but the summary."""
    _, trained = tiny_run
    text = "\n".join(LINES) + "\n"
    result = run_s2s(["translate", "--model", trained["model"], "--beam", "2", "--device", "cpu",
                      "--precision", precision], text.encode())
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode().split("\n")
    assert len(out) - 1 == len(LINES) and out[1] == out[3] == "" and out[0] and out[0] == out[4]
    lines = result.stderr.decode().splitlines()
    summary = json.loads(lines[0])
    assert summary["precision"] == precision and summary["lines"] == len(LINES)
    assert lines[1:] == ["NO PREFECT"], lines  # no torchao warnings about CUDA kernels on a CPU torch


def test_invalid_utf8_is_a_user_error_naming_the_line(tiny_run, tmp_path, capsys):
    _, trained = tiny_run
    source = tmp_path / "bad.txt"
    source.write_bytes(b"Y dijo Dios\nSea la \xff luz\n")
    code = main(["translate", "--model", trained["model"], "--input", str(source),
                 "--output", str(tmp_path / "out.txt")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"s2s: error: {source}: line 2 is not valid UTF-8 at byte offset 7 (0xff)"


@pytest.mark.parametrize("args", [["--input", "-", "--format", "parquet"], ["--format", "parquet"]])
def test_parquet_needs_an_output_directory(tiny_run, capsys, args):
    _, trained = tiny_run
    assert main(["translate", "--model", trained["model"], *args]) == 2
    assert "corpus input (Parquet, CSV, TSV, JSON Lines) needs --input and --output" in \
        capsys.readouterr().err
