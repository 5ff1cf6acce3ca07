"""The 49K-vocabulary head of SmolLM2-135M-Instruct: scoring from the model's own logits vs the backbone's hidden
states with the LM head a block of rows at a time (`HFPolicy` default, `tether.lm.model.policy.score_hidden`).

8 rows = 2 chat-rendered word-problem prompts x 4 (shared prompts), 48 completion tokens, LoRA r=8, one thread;
`token_stats` with the entropy statistic, without grad (the theta_old / reference forward) and with grad plus the
backward of the summed log-probs (the update). The two paths alternate in one process (A B A B, `--reps` rounds),
then one JSON line: median seconds of each and the peak RSS of the process. Same numbers and gradients in both
paths (tests/lm/model/test_hf.py).
"""

from __future__ import annotations

import json
import os
import random
import resource
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402


def main(reps: int = 3) -> None:
    torch.set_num_threads(1)
    from tether.lm.grpo.inputs import as_tokenizer
    from tether.lm.grpo.tasks import make_task
    from tether.lm.model.build import ModelSpec, build_policy, model_tokenizer
    from tether.lm.model.hf import HFPolicy
    from tether.lm.model.tokenizer import pad_left

    spec = ModelSpec(path="smollm2", lora_r=8)
    tok = as_tokenizer(model_tokenizer(spec))
    module = build_policy(spec, tok, seed=0).module
    task, rng = make_task("word_problems", 1), random.Random(0)
    p_ids, p_mask = pad_left([tok.encode(task.sample(rng, "train").prompt) for _ in range(2) for _ in range(4)],
                             tok.pad_id)
    c = torch.randint(10, 40000, (8, 48), generator=torch.Generator().manual_seed(0))
    ids, mask, start = torch.cat([p_ids, c], 1), torch.cat([p_mask, torch.ones_like(c, dtype=torch.bool)], 1), \
        p_ids.shape[1]
    blocks, logits = HFPolicy(module), HFPolicy(module)
    logits._backbone_and_head = lambda: None      # the model's own (B, T, V) logits

    def run(policy, grad: bool) -> float:
        t = time.perf_counter()
        with torch.set_grad_enabled(grad):
            out = policy.token_stats(ids, mask, start=start, stats=("entropy",))
            if grad:
                out["logp"].sum().backward()
        return time.perf_counter() - t

    times: dict[str, list[float]] = {}
    for _ in range(reps):
        for name, policy in (("blocks", blocks), ("logits", logits)):
            for grad in (False, True):
                times.setdefault(f"{name}_{'grad' if grad else 'nograd'}_s", []).append(run(policy, grad))
    out = {"bench": "lm_head_blocks", "model": "SmolLM2-135M-Instruct (fp32, LoRA r=8)", "rows": 8, "tokens": 48,
           "prompt_tokens": start, "reps": reps, **{k: round(statistics.median(v), 3) for k, v in times.items()},
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
