import json

import pytest

import tether.core.report as report
from tether.core.config import field_docs
from tether.core.report import EVAL_HEADLINE, HEADLINE, ReportConfig, default_keys, write_report

# a GRPO metrics row in the order the trainer logs it: lengths and mismatch diagnostics come first
GRPO_ROW = ["rollout/len_mean", "rollout/len_max", "rollout/truncated_frac", "rollout/tokens",
            *[f"mismatch/{k}" for k in ("delta_mean", "delta_max", "delta_frac_above_c", "abs_log_ratio_mean",
                                        "kl_k1", "kl_k2", "kl_k3", "chi2_token", "ess")],
            "reward/mean", "reward/std", "reward/accuracy", "loss/policy", "kl/ref", "dual/dcmdp/lambda",
            "dual/dcmdp/violation", "time/rollout"]
GRPO_EVAL = ["eval/heldout/greedy_acc", "eval/heldout/sample_acc", "eval/heldout/pass@4", "eval/heldout/len_mean",
             "eval/ood/greedy_acc", "eval/ood/sample_acc", "eval/ood/unparsable_frac"]
# an OGBench flow run (docs/metrics.md, flow section)
FLOW_ROW = ["loss/total", "loss/critic", "loss/bc", "loss/adjoint_matching", "kl/path", "kl/path_ema",
            "dual/trqam/lambda", "q/mean", "q/max", "q/min", "diag/adjoint_abs", "time/update"]


def fake_run(path, keys, eval_keys=(), config=None):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config or {"optim": {"lr": 0.1}, "run": {"seed": 0}}))
    rows = [{"step": s, **{k: float(s + i) for i, k in enumerate(keys)}} for s in range(1, 6)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if eval_keys:
        (path / "eval.jsonl").write_text(json.dumps({"step": 5, **{k: 0.5 for k in eval_keys}}) + "\n")
    return path


@pytest.fixture
def panels(monkeypatch):
    """The keys of each figure write_report draws, by file."""
    drawn: dict[str, list[str]] = {}
    real = report.plot_curves

    def spy(runs, keys, out_png, *, file="metrics.jsonl"):
        drawn[file] = list(keys)
        return real(runs, keys, out_png, file=file)

    monkeypatch.setattr(report, "plot_curves", spy)
    return drawn


def test_default_panels_are_the_headline_metrics_not_the_first_logged(tmp_path, panels):
    run = fake_run(tmp_path / "grpo", GRPO_ROW, GRPO_EVAL)
    md = write_report([run], tmp_path / "out").read_text()
    assert panels["metrics.jsonl"] == ["reward/mean", "reward/accuracy", "kl/ref", "mismatch/delta_mean",
                                       "dual/dcmdp/lambda", "rollout/len_mean"]
    assert panels["eval.jsonl"] == ["eval/heldout/greedy_acc", "eval/heldout/sample_acc", "eval/ood/greedy_acc",
                                    "eval/ood/sample_acc"]
    assert "| run | step | reward/mean | reward/accuracy |" in md and "mismatch/kl_k1" not in md


def test_flow_runs_get_their_headline_and_unknown_runs_their_first_keys(tmp_path, panels):
    flow = fake_run(tmp_path / "flow", FLOW_ROW, ["eval/success", "eval/episode_length"])
    write_report([flow], tmp_path / "o1")
    assert panels["metrics.jsonl"] == ["kl/path", "dual/trqam/lambda", "loss/critic", "q/mean"]
    assert panels["eval.jsonl"] == ["eval/success"]
    toy = fake_run(tmp_path / "toy", ["loss/mse", "time/update", "grad/norm"])   # logs no headline key
    write_report([toy], tmp_path / "o2")
    assert panels["metrics.jsonl"] == ["loss/mse", "grad/norm"]
    assert default_keys([f"loss/k{i}" for i in range(20)], HEADLINE, 12) == [f"loss/k{i}" for i in range(12)]
    assert default_keys(["eval/return", "eval/accuracy"], EVAL_HEADLINE, 9) == ["eval/accuracy", "eval/return"]


def test_keys_select_any_logged_key_or_pattern_in_either_file(tmp_path, panels):
    run = fake_run(tmp_path / "grpo", GRPO_ROW, GRPO_EVAL)
    write_report([run], tmp_path / "out", keys=["mismatch/kl_*", "rollout/tokens", "eval/ood/unparsable_frac"])
    assert panels["metrics.jsonl"] == ["mismatch/kl_k1", "mismatch/kl_k2", "mismatch/kl_k3", "rollout/tokens"]
    assert panels["eval.jsonl"] == ["eval/ood/unparsable_frac"]
    doc = field_docs(ReportConfig)["keys"]   # the --keys help says so
    assert "metrics.jsonl or eval.jsonl" in doc and "default: the headline metrics" in doc


def test_config_diff_shows_what_differs_and_matters(tmp_path):
    runs = []
    for i, (name, tb) in enumerate([("none", False), ("dcmdp", True), ("dcmdp", False)]):
        cfg = {"model": {"path": "base:x" if i == 2 else ""}, "correction": {"name": name, "lambda_max": None},
               "run": {"dir": f"runs/{i}", "seed": i, "tensorboard": tb, "log_every": i + 1}}
        runs.append(fake_run(tmp_path / f"r{i}", ["reward/mean"], config=cfg))
    md = write_report(runs, tmp_path / "out").read_text()
    diff = md.split("## Config differences")[1]
    assert "| model.path |  |  | base:x |" in diff           # empty in every run but one: still a difference
    assert "| correction.name | none | dcmdp | dcmdp |" in diff and "| run.seed | 0 | 1 | 2 |" in diff
    for noise in ("run.dir", "run.tensorboard", "run.log_every", "lambda_max", "(seed/name)"):
        assert noise not in diff


def test_a_run_with_a_broken_config_json_is_reported_without_it(tmp_path, capsys):
    from tether.core.report import write_report

    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text("{not json")
    (run / "metrics.jsonl").write_text('{"step": 1, "reward/mean": 0.5}\n')
    assert write_report([run], tmp_path / "out").exists()
    assert "is not valid JSON" in capsys.readouterr().err
