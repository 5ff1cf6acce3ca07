"""Docs match code: every logged key is in docs/metrics.md; the documented files and commands exist."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tether.core.rundir import RunDir, read_jsonl
from tether.demo import BanditConfig, kl_budget_bandit
from tether.testing.docs import python_snippets, undocumented
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


README_SNIPPETS = python_snippets(ROOT / "README.md")


@pytest.mark.parametrize("index", range(len(README_SNIPPETS)))
def test_readme_python_snippets_run_as_written(index, tmp_path):
    """Each README example runs unchanged in a fresh interpreter (in an empty directory, offline, one thread)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    done = subprocess.run([sys.executable, "-c", README_SNIPPETS[index]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"README snippet {index} failed:\n{README_SNIPPETS[index]}\n{done.stderr[-3000:]}"


def test_readme_has_the_examples_the_tests_run():
    assert len(README_SNIPPETS) >= 6 and any("reward_funcs=[exact]" in s for s in README_SNIPPETS)
