"""Wall time of one GRPO step in tether vs TRL's GRPOTrainer, same model, prompts, G and max tokens, on CPU.

Setup: a random-init Qwen2 (tied embeddings, SDPA), the
32-symbol char tokenizer, running-sum prompts, 16 prompts x G=8 = 128 completions of up to 32 tokens (EOS
on), temperature 1, reward 1 if the completion contains '#', beta 0, one optimizer step per generation,
lr 1e-3, grad clip 1. A step = generation + reward + advantages + loss forward + backward + clip + AdamW.
Median over steps 3..N, wall and CPU time.

tether variants (all in this process; every variant, TRL's included, runs twice in ABBA order and is averaged):
  tether         the HF model in the trainer (`HFPolicy`, engine on the exported weights), default config
  native         the same weights loaded into TinyLM (identical math, see tests/lm/model/test_hf.py)
  native_lp      native with rollout.logprobs=sampler: the engine returns its decode-loop log-probs instead
                 of recomputing them with one more full-sequence forward (the fp32 default, for DCMDP's
                 exact on-policy control); the trainer's own theta_old forward is unchanged
  native_compiled  native with rollout.compile=True (the torch.compile'd decode step)
  native_compiled_all  native_compiled plus optim.compile=True (compiled blocks in the trainer's forward/backward)
  native_compiled_all_unshared  (--ablate-shared) the same with every row running its own prompt in the trainer's
                 forward (`TinyLM.continuation_logits` replaced by the plain forward): what sharing the G rows'
                 prompt saves
The matmul share of native_compiled_all (aten::mm/addmm/bmm self time over all self time, from torch.profiler
over 2 extra steps) gives `ratio_cap_mm` = TRL / (that variant's matmul seconds): the ratio if everything but
the matmuls took no time, at this machine's matmul speed (TRL does the same matmuls, bar the shared prompts).
Compiles fall in the first steps (a second one when the prompt or completion length first changes); the median
over steps 3..N leaves them out, so use --steps >= 12 for the compiled variants.
TRL variants: gradient checkpointing off (same work as tether) and on (TRL 1.16's default).
--bf16: tether with optim.bf16 (autocast) and a bf16 engine, TRL with bf16=True (autocast, bf16 generation).
Prints one JSON line; ratio_* = TRL (GC off) / tether variant, ratio_trl_default_* = TRL (GC on) / variant.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from _machine import runq_wait_s  # noqa: E402


def hash_reward(batch) -> torch.Tensor:
    return torch.tensor([float("#" in c) for c in batch.completions])


def matmul_fraction(step, n: int = 2) -> float:
    """Share of self CPU time spent in matmul kernels over n calls of step() (torch.profiler)."""
    from torch.profiler import profile
    with profile() as prof:
        for _ in range(n):
            step()
    events = prof.key_averages()
    mm = sum(e.self_cpu_time_total for e in events
             if e.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"))
    return mm / sum(e.self_cpu_time_total for e in events)


def plain_continuation_logits(self, ids, mask, start):
    """TinyLM.continuation_logits without prompt sharing: one forward over the joined rows."""
    return self(ids, mask, logits_from=start - 1)[:, :-1]


def time_tether(args, native: bool, extra: dict | None = None, compile_blocks: bool = False,
                share: bool = True, profile: bool = False) -> tuple[float, float] | tuple[float, float, float]:
    from tether.core.config import override
    from tether.lm.grpo.config import TrainConfig
    from tether.lm.grpo.rewards import REWARDS
    from tether.lm.grpo.trainer import GRPOTrainer
    from tether.lm.model.hf import hf_to_native
    from tether.lm.model.policy import TinyPolicy
    from tether.lm.model.tinylm import TinyLM

    if "bench_hash" not in REWARDS:
        REWARDS.register("bench_hash")(hash_reward)
    cfg = override(TrainConfig(), {
        "model.arch": "qwen2", "model.d_model": args.hidden, "model.n_layers": args.layers, "model.n_heads": args.heads,
        "model.n_kv_heads": args.heads, "model.d_ff": args.ff, "model.max_seq_len": 128,
        "rollout.prompts_per_step": 16, "rollout.group_size": 8, "rollout.max_new_tokens": 32,
        "algo.reward": "bench_hash", "algo.aggregation": "token_mean_global", "optim.lr": 1e-3,
        "eval.every": 0, "samples_every": 0, "steps": args.steps, "optim.bf16": str(args.bf16),
        "rollout.precision": "bf16" if args.bf16 else "fp32", **(extra or {})})
    tr = GRPOTrainer(cfg)
    if native:
        mcfg, sd = hf_to_native(tr.policy.module)
        model = TinyLM(mcfg)
        model.load_state_dict(sd)
        tr.policy = TinyPolicy(model)
        tr.params = list(model.parameters())
        tr.opt = torch.optim.AdamW(tr.params, lr=1e-3, weight_decay=0.0)
        tr.build_engine()  # the engine (and the exact-fp32 reuse rule) for the swapped-in TinyLM
        if compile_blocks:  # what optim.compile does for a TinyLM policy (the config here builds an HF one)
            model.compile_blocks()
    walls, cpus = [], []
    with mock.patch.object(TinyLM, "continuation_logits", TinyLM.continuation_logits if share
                           else plain_continuation_logits):
        for _ in range(args.steps):
            w, c = time.perf_counter(), time.process_time()
            tr.step()
            walls.append(time.perf_counter() - w)
            cpus.append(time.process_time() - c)
    medians = statistics.median(walls[2:]), statistics.median(cpus[2:])
    return (*medians, matmul_fraction(tr.step)) if profile else medians


def time_trl(args, gradient_checkpointing: bool) -> tuple[float, float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from tether.lm.grpo.tasks import make_task
    from tether.lm.model.hf import tiny_hf_model
    from tether.lm.model.tokenizer import CharTokenizer, to_hf_tokenizer

    tok = to_hf_tokenizer(CharTokenizer())
    model = tiny_hf_model("qwen2", vocab_size=len(tok), hidden=args.hidden, layers=args.layers, heads=args.heads,
                          intermediate=args.ff, max_positions=128)
    model.train()
    task, rng = make_task("running_sum", 2), random.Random(0)
    ds = Dataset.from_dict({"prompt": [task.sample(rng, "train").prompt for _ in range(16 * (args.steps + 2))]})

    def reward_hash(completions, **kwargs):
        return [1.0 if "#" in c else 0.0 for c in completions]

    walls, cpus = [], []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.w, self.c = time.perf_counter(), time.process_time()

        def on_step_end(self, *a, **k):
            walls.append(time.perf_counter() - self.w)
            cpus.append(time.process_time() - self.c)

    with tempfile.TemporaryDirectory() as d:
        targs = GRPOConfig(
            output_dir=d, use_cpu=True, bf16=args.bf16, fp16=False, seed=0, per_device_train_batch_size=128,
            gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1, num_generations=8,
            max_completion_length=32, temperature=1.0, top_p=1.0, top_k=0, beta=0.0, loss_type="dapo",
            learning_rate=1e-3, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0,
            max_steps=args.steps, logging_strategy="no", report_to="none", save_strategy="no", dataloader_num_workers=0,
            disable_dropout=True, log_completions=False, gradient_checkpointing=gradient_checkpointing)
        trainer = GRPOTrainer(model=model, processing_class=tok, reward_funcs=reward_hash, args=targs,
                              train_dataset=ds, callbacks=[Clock()])
        trainer.train()
    return statistics.median(walls[2:]), statistics.median(cpus[2:])


def main() -> None:
    ap = argparse.ArgumentParser()
    for k, v in dict(hidden=64, layers=2, heads=4, ff=256, steps=12).items():
        ap.add_argument(f"--{k}", type=int, default=v)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--ablate-shared", action="store_true", help="add native_compiled_all_unshared")
    args = ap.parse_args()
    torch.set_num_threads(1)
    q0, w0 = runq_wait_s(), time.perf_counter()
    runs = {}  # name -> list of (wall, cpu) medians, one per round
    mm_frac = []  # matmul share of native_compiled_all's step, one per round

    def tether_variants() -> None:
        runs.setdefault("tether", []).append(time_tether(args, native=False))
        runs.setdefault("native", []).append(time_tether(args, native=True))
        runs.setdefault("native_lp", []).append(time_tether(args, native=True, extra={"rollout.logprobs": "sampler"}))
        runs.setdefault("native_compiled", []).append(time_tether(args, native=True, extra={"rollout.compile": "True"}))
        *t, mm = time_tether(args, native=True, extra={"rollout.compile": "True"}, compile_blocks=True, profile=True)
        runs.setdefault("native_compiled_all", []).append(tuple(t))
        mm_frac.append(mm)
        if args.ablate_shared:
            runs.setdefault("native_compiled_all_unshared", []).append(
                time_tether(args, native=True, extra={"rollout.compile": "True"}, compile_blocks=True, share=False))

    def trl_variants() -> None:
        runs.setdefault("trl", []).append(time_trl(args, gradient_checkpointing=False))
        runs.setdefault("trl_gc", []).append(time_trl(args, gradient_checkpointing=True))

    # ABBA: tether then TRL, then TRL then tether, so that a linear drift of the machine's speed cancels
    for first, second in ((tether_variants, trl_variants), (trl_variants, tether_variants)):
        first()
        second()
    wall = {k: statistics.mean(w for w, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.mean(c for _, c in v) for k, v in runs.items()}
    out = {"bench": "lm_grpo_step", "hidden": args.hidden, "layers": args.layers, "completions": 128, "max_tokens": 32,
           "bf16": args.bf16, "runq_wait_frac": round((runq_wait_s() - q0) / (time.perf_counter() - w0), 3)}
    out.update({f"{k}_s": round(v, 4) for k, v in wall.items()})
    out.update({f"{k}_cpu_s": round(v, 4) for k, v in cpu.items()})
    out["tether_runs_s"] = [round(w, 4) for w, _ in runs["tether"]]
    out["native_runs_s"] = [round(w, 4) for w, _ in runs["native"]]
    out["trl_runs_s"] = [round(w, 4) for w, _ in runs["trl"]]
    out["native_compiled_all_mm_frac"] = round(statistics.mean(mm_frac), 3)
    out["ratio_cap_mm"] = round(wall["trl"] / (wall["native_compiled_all"] * statistics.mean(mm_frac)), 2)
    for k in [k for k in runs if not k.startswith("trl")]:
        out[f"ratio_{k}"] = round(wall["trl"] / wall[k], 2)
        out[f"ratio_{k}_cpu"] = round(cpu["trl"] / cpu[k], 2)
        out[f"ratio_trl_default_{k}"] = round(wall["trl_gc"] / wall[k], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
