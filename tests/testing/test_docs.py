"""Docs match code: every logged key is in docs/metrics.md; the documented files and commands exist."""

from pathlib import Path

from tether.core.rundir import RunDir, read_jsonl
from tether.demo import BanditConfig, kl_budget_bandit
from tether.testing.docs import undocumented
from tether.testing.toy import ToyConfig, ToyTrainer

ROOT = Path(__file__).resolve().parents[2]


def _keys(run_dir: Path) -> set[str]:
    return {k for row in read_jsonl(run_dir / "metrics.jsonl") for k in row}


def test_core_demo_and_toy_keys_are_documented(tmp_path):
    cfg = BanditConfig(steps=50)
    kl_budget_bandit(cfg, RunDir.create(tmp_path / "bandit", cfg, seed=0))
    toy = ToyConfig(steps=3)
    ToyTrainer(toy, RunDir.create(tmp_path / "toy", toy, seed=0)).fit()
    keys = _keys(tmp_path / "bandit") | _keys(tmp_path / "toy")
    assert len(keys) > 5
    assert undocumented(keys) == []


def test_glossary_checker_catches_a_missing_key():
    assert undocumented(["loss/not_a_documented_key", "time/rollout", "grad/norm"]) == ["loss/not_a_documented_key"]


def test_readme_shows_the_two_commands_and_ci_calls_make_test():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    for doc in ("docs/architecture.md", "docs/metrics.md"):
        assert (ROOT / doc).exists(), doc
