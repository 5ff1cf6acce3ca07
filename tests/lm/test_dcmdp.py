"""DCMDP and the deployment-precision engines through the real trainer (issue 6; arXiv:2606.08779)."""

import math

import pytest
import torch

from tether.core.config import override
from tether.core.rundir import RunDir, read_jsonl
from tether.lm.grpo.config import smoke
from tether.lm.grpo.corrections import CORRECTIONS
from tether.lm.grpo.trainer import GRPOTrainer
from tether.lm.model.moe import MoEMLP, route_flip_frac
from tether.testing.docs import undocumented


def _cfg(**kw):
    base = {"steps": "3", "eval.every": "0", "eval.n_prompts": "4", "eval.k": "1", "eval.splits": "heldout",
            "samples_every": "0", "rollout.prompts_per_step": "4"}
    return override(smoke(), {**base, **kw})


def test_fp32_engine_gives_exactly_zero_mismatch():
    tr = GRPOTrainer(_cfg(**{"rollout.precision": "fp32"}))
    for _ in range(2):  # also after an update: the engine re-syncs and stays bit-identical
        m = tr.step()
        assert m["mismatch/delta_mean"] == 0.0 and m["mismatch/delta_max"] == 0.0
        assert m["mismatch/kl_k3"] == 0.0 and m["mismatch/abs_log_ratio_max"] == 0.0


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp8", "int8", "int4"])
def test_low_precision_engines_really_disagree(precision):
    m = GRPOTrainer(_cfg(**{"rollout.precision": precision})).step()
    assert 0 < m["mismatch/delta_mean"] < 0.1 and math.isfinite(m["mismatch/chi2_seq"])


def test_lambda_rises_when_violated_and_decays_inside_the_tolerance():
    up = GRPOTrainer(_cfg(**{"rollout.precision": "int4", "correction.name": "dcmdp", "correction.c": "1e-5",
                             "correction.lambda_init": "0.1"}))
    lams = [up.step()["dual/dcmdp/lambda"] for _ in range(3)] + [float(up.dual_state.value)]
    assert lams == sorted(lams) and lams[-1] > lams[0]  # δ̄ ~ 1e-2 > c: λ rises
    down = GRPOTrainer(_cfg(**{"rollout.precision": "fp32", "correction.name": "dcmdp", "correction.c": "0.01",
                               "correction.lambda_init": "0.015"}))
    lams = [down.step()["dual/dcmdp/lambda"] for _ in range(2)] + [float(down.dual_state.value)]
    assert lams == pytest.approx([0.015, 0.005, 0.0])  # δ̄ = 0 < c: λ decays by c per step to λ_min = 0


@pytest.mark.parametrize("name", sorted(CORRECTIONS.names()) + ["dcmdp+tis_token"])
def test_smoke_run_per_correction_is_finite_and_documented(name, tmp_path):
    cfg = _cfg(**{"rollout.precision": "int8", "correction.name": name, "steps": "2"})
    GRPOTrainer(cfg, RunDir.create(tmp_path, cfg, seed=0)).fit()
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert len(rows) == 2 and all(math.isfinite(v) for r in rows for v in r.values())
    assert all("mismatch/delta_mean" in r for r in rows)
    if "dcmdp" in name:
        assert all("dual/dcmdp/lambda" in r for r in rows)
    assert undocumented({k for r in rows for k in r}) == []


@pytest.mark.parametrize("variant", ["token_to_go", "sequence_reward", "differentiable"])
def test_dcmdp_variants_train(variant):
    m = GRPOTrainer(_cfg(**{"rollout.precision": "int4", "correction.name": "dcmdp",
                            "correction.variant": variant})).step()
    assert math.isfinite(m["loss/total"])


def test_moe_model_counts_routing_flips():
    tr = GRPOTrainer(_cfg(**{"model.path": "", "model.n_experts": "4", "model.d_ff": "64",
                             "rollout.precision": "int4"}))
    assert sum(isinstance(mod, MoEMLP) for mod in tr.policy.module.modules()) == 2
    m = tr.step()
    assert 0 < m["mismatch/route_flip_frac"] < 1
    fp32 = GRPOTrainer(_cfg(**{"model.path": "", "model.n_experts": "4", "model.d_ff": "64"})).step()
    assert fp32["mismatch/route_flip_frac"] == 0.0


def test_route_flip_frac_compares_sets():
    a = torch.tensor([[[0, 1], [2, 3]]])
    b = torch.tensor([[[1, 0], [2, 1]]])  # same set in a different order, then a real flip
    assert route_flip_frac([a], [b], torch.ones(1, 2, dtype=torch.bool)).item() == 0.5


def test_mismatch_command_json_per_precision(capsys):
    import json

    from tether.cli import main

    assert main(["lm", "mismatch", "--precisions", "fp32,int8", "--n_prompts", "4", "--samples", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["precision"] for r in rows] == ["fp32", "int8"]
    assert all({"delta_mean", "delta_max", "kl_k3", "ppl_gap"} <= set(r) for r in rows)
    assert rows[0]["delta_mean"] == 0.0 < rows[1]["delta_mean"]
    assert main(["lm", "mismatch", "--precisions", "fp4"]) == 2
    assert "precisions" in capsys.readouterr().err


def test_reusing_theta_old_for_the_exact_fp32_engine_equals_its_recompute():
    """The trainer skips the engine's rescoring forward in exact fp32 mode; the result must be the same."""
    fast = GRPOTrainer(_cfg())
    assert fast.reuse_exact and not fast.engine.recompute
    slow = GRPOTrainer(_cfg(**{"optim.micro_batch": "16"}))  # micro-batching disables the reuse
    assert not slow.reuse_exact and slow.engine.recompute
    b_fast, _ = fast.prepare(fast.rollout(), 0.0)
    b_slow, _ = slow.prepare(slow.rollout(), 0.0)
    assert torch.equal(b_fast.ids, b_slow.ids)  # same seed, same tokens
    assert torch.equal(b_fast.rollout_logp, b_slow.rollout_logp)
