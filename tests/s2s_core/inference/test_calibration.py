from s2s_core.inference.calibration import MIN_CALIBRATION_ROWS, confidence_threshold
from s2s_core.inference.flags import DEFAULT_THRESHOLDS, FlagThresholds, thresholds_from
from s2s_core.inference.package import load_package, save_package
from s2s_core.inference.translator import DecodeConfig, Translator


def test_the_threshold_flags_the_share_asked_for(reverse_task):
    translator = Translator(reverse_task.model, reverse_task.tokenizers)
    config = DecodeConfig(beam_size=2)
    record = confidence_threshold(translator, reverse_task.dev_src, config, share=0.1)
    assert record["calibration"] == {"rows": 200, "share": 0.1, "beam_size": 2}
    judged = Translator(reverse_task.model, reverse_task.tokenizers,
                        thresholds=FlagThresholds(min_mean_log_prob=record["min_mean_log_prob"]))
    flagged = [t for t in judged.translate(reverse_task.dev_src, config) if "low_confidence" in t.flags]
    assert len(flagged) == 20
    # The flagged rows are the least confident: every one scores below every row not flagged.
    scores = sorted(t.score for t in judged.translate(reverse_task.dev_src, config))
    assert max(t.score for t in flagged) == scores[19] < scores[20]


def test_too_few_rows_keep_the_default(reverse_task):
    translator = Translator(reverse_task.model, reverse_task.tokenizers)
    few = reverse_task.dev_src[:MIN_CALIBRATION_ROWS - 1] + ["", "   "]
    assert confidence_threshold(translator, few, DecodeConfig()) is None


def test_a_package_carries_its_thresholds(reverse_task, tmp_path):
    record = {"min_mean_log_prob": -0.42, "calibration": {"rows": 200, "share": 0.1, "beam_size": 5}}
    save_package(str(tmp_path / "calibrated"), reverse_task.model, reverse_task.tokenizers,
                 extra={"flag_thresholds": record})
    save_package(str(tmp_path / "plain"), reverse_task.model, reverse_task.tokenizers)
    calibrated = load_package(str(tmp_path / "calibrated"))
    assert calibrated.translator("cpu").thresholds.min_mean_log_prob == -0.42
    assert calibrated.flag_thresholds.max_ratio == DEFAULT_THRESHOLDS.max_ratio  # the others: defaults
    assert load_package(str(tmp_path / "plain")).translator("cpu").thresholds == DEFAULT_THRESHOLDS
    assert thresholds_from({"unknown": 1}) == DEFAULT_THRESHOLDS
