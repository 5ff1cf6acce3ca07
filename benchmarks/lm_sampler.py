"""Tokens/s of tether's rollout engine vs `transformers` `generate` (KV cache) on the same tiny HF model.

Same Qwen2 model (random init, tied embeddings, SDPA), same batch of running-sum prompts, same max new
tokens, EOS disabled in both so every row samples exactly `--new` tokens; pure sampling (temperature 1,
top-k off, top-p 1). One torch thread. Prints one JSON line: ours_tok_s, hf_tok_s, ratio (ours / hf),
plus CPU-time rates and the run-queue wait fraction (other jobs on the shared machine); the two
samplers are timed in alternation so that such load hits both alike.
Usage: python benchmarks/lm_sampler.py [--hidden 64 --layers 2 --heads 4 --ff 256 --batch 256 --new 32]
       [--dtype bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def runq_wait_s() -> float:
    """Seconds this process spent runnable but waiting for a core (/proc schedstat), all threads."""
    total = 0
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            total += int(f.read().split()[1])
    return total / 1e9


def timed_pair(fa, fb, repeats: int) -> tuple[tuple[float, float], tuple[float, float], float]:
    """Median (wall s, CPU s) of fa and of fb, calls interleaved a, b, a, b, ... after one warm-up each, so
    that load from other jobs hits both alike; also the run-queue wait fraction over the whole measurement."""
    fa(), fb()
    res = {0: ([], []), 1: ([], [])}
    q0, w0 = runq_wait_s(), time.perf_counter()
    for _ in range(repeats):
        for i, fn in enumerate((fa, fb)):
            t, c = time.perf_counter(), time.process_time()
            fn()
            res[i][0].append(time.perf_counter() - t)
            res[i][1].append(time.process_time() - c)
    med = lambda i: (statistics.median(res[i][0]), statistics.median(res[i][1]))
    return med(0), med(1), (runq_wait_s() - q0) / (time.perf_counter() - w0)


def main() -> None:
    ap = argparse.ArgumentParser()
    for k, v in dict(hidden=64, layers=2, heads=4, ff=256, batch=256, new=32, repeats=5, seed=0).items():
        ap.add_argument(f"--{k}", type=int, default=v)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from tether.lm.hf import HFPolicy, tiny_hf_model
    from tether.lm.sampler import RolloutEngine
    from tether.lm.tokenizer import CharTokenizer, pad_left

    tok = CharTokenizer()
    model = tiny_hf_model("qwen2", vocab_size=tok.vocab_size, hidden=args.hidden, layers=args.layers,
                          heads=args.heads, intermediate=args.ff, seed=args.seed).eval()
    rng = random.Random(args.seed)
    prompts = ["S" + ",".join(str(rng.randint(0, 9)) for _ in range(4)) + "?" for _ in range(args.batch)]
    ids, mask = pad_left([tok.encode(p) for p in prompts], tok.pad_id)
    engine = RolloutEngine(precision=args.dtype, backend="native")
    engine.sync_from(HFPolicy(model))
    if args.dtype == "bf16":
        model.to(torch.bfloat16)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = tok.pad_id

    def ours():
        g = torch.Generator().manual_seed(0)
        r = engine.generate(ids, mask, max_new_tokens=args.new, eos_id=-1, pad_id=tok.pad_id, generator=g)
        assert r.tokens.shape == (args.batch, args.new)

    @torch.inference_mode()
    def hf():
        out = model.generate(input_ids=ids, attention_mask=mask.long(), do_sample=True, temperature=1.0, top_k=0,
                             top_p=1.0, max_new_tokens=args.new, min_new_tokens=args.new, use_cache=True,
                             eos_token_id=None, pad_token_id=tok.pad_id)
        assert out.shape == (args.batch, ids.shape[1] + args.new)

    n_tok = args.batch * args.new
    (ours_w, ours_c), (hf_w, hf_c), runq = timed_pair(ours, hf, args.repeats)
    print(json.dumps({
        "bench": "lm_sampler", "dtype": args.dtype, "hidden": args.hidden, "layers": args.layers, "batch": args.batch,
        "new_tokens": args.new, "params": sum(p.numel() for p in model.parameters()),
        "ours_tok_s": round(n_tok / ours_w), "hf_tok_s": round(n_tok / hf_w), "ratio": round(hf_w / ours_w, 2),
        "ours_tok_cpu_s": round(n_tok / ours_c), "hf_tok_cpu_s": round(n_tok / hf_c),
        "ratio_cpu": round(hf_c / ours_c, 2), "runq_wait_frac": round(runq, 3),
    }))


if __name__ == "__main__":
    main()
