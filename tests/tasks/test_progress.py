import logging
import sys

from tasks.progress import ProgressBar, format_seconds


def test_without_a_terminal_progress_is_logged_with_rate_and_eta(caplog):
    logger = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        bar = ProgressBar("translating test", 200, "sentences", logger, every=0, live=False)
        bar.update(50)
        bar.advance(50)
        bar.close()
    first, second = (r.getMessage() for r in caplog.records)
    assert first.startswith("translating test: 50/200 sentences (25.0%), ") and ", eta " in first
    assert second.startswith("translating test: 100/200 sentences (50.0%)")


def test_a_live_bar_routes_stderr_log_lines_above_it_and_gives_them_back(capsys):
    logger = logging.getLogger("test.progress.live")
    handler = logging.StreamHandler(sys.stderr)
    logger.addHandler(handler)
    try:
        bar = ProgressBar("training", 100, "%", logger, every=None, live=True)
        assert handler.stream is sys.stderr is not sys.__stderr__  # rich's proxy while the bar runs
        logger.warning("a line while the bar runs")
        bar.update(40)
        bar.close()
        assert handler.stream is sys.stderr  # the original stream again
    finally:
        logger.removeHandler(handler)
    assert "a line while the bar runs" in capsys.readouterr().err


def test_format_seconds():
    assert [format_seconds(s) for s in (4.2, 185, 3725)] == ["4s", "3m05s", "1h02m"]
