"""One GRPO step of tether vs TRL's GRPOTrainer on a real pretrained model (SmolLM2-135M-Instruct), one CPU thread.

Equal settings: the same fp32 weights (`--model.path smollm2`, the cached conversion), LoRA r=8 / alpha 16 on
q_proj and v_proj (peft, dropout 0), word-problem prompts rendered by the model's chat template, 2 prompts x G=4
completions of up to `--tokens` new tokens (EOS on), temperature 1, the same reward function (the word-problem
verifier), beta 0 (no reference model), one AdamW step per generation batch, constant lr, grad clip 1.
A step = generation + reward + advantages + theta_old / loss forward + backward + clip + AdamW.

Interleaved in one process: TRL's `train()` runs `--rounds` steps, and a callback runs one tether step after each
TRL step (A B A B), outside TRL's clock. The first step of each is a warm-up and is left out. Completion lengths
differ between the two (independent samples, EOS on), so the line also gives the time per generated token.
Where the time goes: tether's own phase timers (time/rollout, time/old_logp = the fused forward, time/update =
backward + AdamW), TRL's by wrapping its `_generate` (sampling) and `compute_loss` (loss forward); the rest of a
TRL step is reward + advantages + backward + AdamW.

One more step of each runs under torch.profiler (excluded from the timings): `*_vocab_frac` is the share of that
step's self CPU time spent in ops with a 49152-wide (vocabulary) operand or result: the LM-head matmuls, its
backward, log-softmax / logsumexp / entropy over the vocabulary; `*_mm_frac` the share of all matmul kernels.

Writes one JSON line to docs/results/data/lm_trl_step.jsonl (and prints it); ratio = TRL s/step / tether s/step.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from _machine import cpu_name, runq_wait_s  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "data" / "lm_trl_step.jsonl"


_MM = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def profile_shares(prof, vocab: int) -> dict[str, float]:
    """Shares of self CPU time: ops touching a vocab-wide tensor, and matmul kernels."""
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    wide = sum(e.self_cpu_time_total for e in events if any(vocab in s for s in e.input_shapes if s))
    mm = sum(e.self_cpu_time_total for e in events if e.key in _MM)
    return {"vocab_frac": round(wide / total, 3), "mm_frac": round(mm / total, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5, help="steps of each trainer (the first is a warm-up)")
    ap.add_argument("--tokens", type=int, default=48, help="max new tokens per completion")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--lora", type=int, default=8)
    ap.add_argument("--no-write", action="store_true", help="print the line only")
    ap.add_argument("--no-profile", action="store_true", help="skip the profiled extra step")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from tether.core.config import override
    from tether.lm.grpo.config import TrainConfig
    from tether.lm.grpo.tasks import make_task
    from tether.lm.grpo.trainer import GRPOTrainer as TetherTrainer
    from tether.lm.model.build import resolve_path

    task = make_task("word_problems", 1)

    def correct(completions, answer, **kwargs):
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]   # TRL: conversational
        return [float(task.verify(t, a)) for t, a in zip(texts, answer, strict=True)]

    n = args.prompts * args.group
    cfg = override(TrainConfig(), {
        "model.path": "smollm2", "model.lora_r": str(args.lora), "task.name": "word_problems", "task.difficulty": "1",
        "rollout.prompts_per_step": str(args.prompts), "rollout.group_size": str(args.group),
        "rollout.max_new_tokens": str(args.tokens), "optim.lr": "5e-5", "eval.every": "0", "samples_every": "0",
        "steps": str(args.rounds + 1)})
    tether = TetherTrainer(cfg, reward_funcs=[correct])

    path = resolve_path("smollm2")
    tok = AutoTokenizer.from_pretrained(path)
    rng = random.Random(0)
    problems = [task.sample(rng, "train") for _ in range(args.prompts * (args.rounds + 3))]
    ds = Dataset.from_dict({"prompt": [[{"role": "user", "content": p.prompt}] for p in problems],
                            "answer": [p.answer for p in problems]})
    trl_times: list[float] = []
    tether_times: list[float] = []
    tether_phases: list[dict] = []
    trl_phases: list[dict] = []
    lengths = {"trl": [], "tether": []}
    acc = {"gen": 0.0, "loss_fwd": 0.0}
    shares: dict[str, dict] = {}
    profiled = not args.no_profile

    class TimedGRPO(GRPOTrainer):
        def _generate(self, prompts):
            t = time.perf_counter()
            out = super()._generate(prompts)
            acc["gen"] += time.perf_counter() - t
            lengths["trl"].append(statistics.mean(len(r) for r in out[1]))
            return out

        def compute_loss(self, *a, **k):
            t = time.perf_counter()
            out = super().compute_loss(*a, **k)
            acc["loss_fwd"] += time.perf_counter() - t
            return out

    class Interleave(TrainerCallback):
        def on_step_begin(self, targs, state, control, **k):
            acc.update(gen=0.0, loss_fwd=0.0)
            self.prof = None
            if state.global_step == args.rounds:   # the extra, profiled step
                self.prof = torch.profiler.profile(record_shapes=True)
                self.prof.start()
            self.t = time.perf_counter()

        def on_step_end(self, targs, state, control, **k):
            if self.prof is not None:
                self.prof.stop()
                shares["trl"] = profile_shares(self.prof, vocab)
                with torch.profiler.profile(record_shapes=True) as prof:
                    tether.step()
                shares["tether"] = profile_shares(prof, vocab)
                return
            trl_times.append(time.perf_counter() - self.t)
            trl_phases.append(dict(acc))
            t = time.perf_counter()
            m = tether.step()
            tether_times.append(time.perf_counter() - t)
            tether_phases.append({k: m[k] for k in ("time/rollout", "time/old_logp", "time/reward", "time/update")})
            lengths["tether"].append(m["rollout/len_mean"])

    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa")
    vocab = model.config.vocab_size
    q0, w0 = runq_wait_s(), time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        targs = GRPOConfig(
            output_dir=d, use_cpu=True, bf16=False, fp16=False, seed=0, per_device_train_batch_size=n,
            gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1, num_generations=args.group,
            max_completion_length=args.tokens, temperature=1.0, top_p=1.0, top_k=0, beta=0.0, loss_type="dapo",
            learning_rate=5e-5, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0,
            max_steps=args.rounds + profiled, logging_strategy="no", report_to="none", save_strategy="no",
            dataloader_num_workers=0, disable_dropout=True, log_completions=False, gradient_checkpointing=False)
        trainer = TimedGRPO(model=model, processing_class=tok, reward_funcs=correct, args=targs, train_dataset=ds,
                            callbacks=[Interleave()],
                            peft_config=LoraConfig(r=args.lora, lora_alpha=2 * args.lora,
                                                   target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
        trainer.train()
    wall = time.perf_counter() - w0
    mean = lambda xs: statistics.mean(xs[1:])   # noqa: E731  (the first step is a warm-up)
    trl_s, tether_s = mean(trl_times), mean(tether_times)
    lengths["trl"] = lengths["trl"][:args.rounds]   # not the profiled step's
    tok_trl, tok_tether = mean(lengths["trl"]) * n, mean(lengths["tether"]) * n
    out = {
        "bench": "lm_trl_step", "model": "SmolLM2-135M-Instruct (fp32)", "cpu": cpu_name(), "threads": 1,
        "lora_r": args.lora, "prompts": args.prompts, "group": args.group, "max_new_tokens": args.tokens,
        "rounds": args.rounds, "trl_s": round(trl_s, 3), "tether_s": round(tether_s, 3),
        "ratio": round(trl_s / tether_s, 2),
        "ratio_per_token": round((trl_s / tok_trl) / (tether_s / tok_tether), 2),
        "trl_len_mean": round(mean(lengths["trl"]), 1), "tether_len_mean": round(mean(lengths["tether"]), 1),
        "trl_steps_s": [round(x, 2) for x in trl_times], "tether_steps_s": [round(x, 2) for x in tether_times],
        "trl_gen_s": round(mean([p["gen"] for p in trl_phases]), 3),
        "trl_loss_fwd_s": round(mean([p["loss_fwd"] for p in trl_phases]), 3),
        **{f"tether_{k.split('/')[1]}_s": round(mean([p[k] for p in tether_phases]), 3) for k in tether_phases[0]},
        **{f"{who}_{k}": v for who, d in shares.items() for k, v in d.items()},
        "runq_wait_frac": round((runq_wait_s() - q0) / wall, 3), "wall_s": round(wall, 1),
        "trl_version": __import__("trl").__version__, "torch": torch.__version__,
    }
    line = json.dumps(out)
    print(line)
    if not args.no_write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        with open(OUT, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
