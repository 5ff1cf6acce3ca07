"""Tokens/s of tether's rollout engine vs `transformers` `generate` (KV cache) on the same tiny HF model.

Same Qwen2 model (random init, tied embeddings, SDPA), same batch of running-sum prompts, same max new
tokens, EOS disabled in both so every row samples exactly `--new` tokens; pure sampling (temperature 1,
top-k off, top-p 1). One torch thread. Prints one JSON line: ours_tok_s, hf_tok_s, ratio (ours / hf),
plus CPU-time rates and the run-queue wait fraction (other jobs on the shared machine). The samplers
are timed in alternation, once per round, so that such load hits all alike; ratios are medians over
rounds. "ours" returns the decode loop's log-probs (HF's `generate` computes the same softmax and returns
none); "ours_exact" is the engine default, which in fp32 recomputes trainer-exact log-probs with one extra
full-sequence forward (`RolloutEngine(logprobs=...)`); in bf16 the two are the same path. "ours_compiled"
is "ours" with `compile=True` (a torch.compile'd fixed-shape decode step); its first call, which compiles,
is timed separately (`first_compiled_call_s`).
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
from _machine import runq_wait_s

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed_rounds(fns: dict, repeats: int) -> tuple[dict, dict, float]:
    """Time each function once per round, in turn, for `repeats` rounds after one warm-up each, so that load
    from other jobs hits all alike. Returns per-function lists of wall and CPU seconds, and the run-queue
    wait fraction over the whole measurement."""
    for fn in fns.values():
        fn()
    wall, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    q0, w0 = runq_wait_s(), time.perf_counter()
    for _ in range(repeats):
        for k, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    return wall, cpu, (runq_wait_s() - q0) / (time.perf_counter() - w0)


def ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a/b (robust to load that changes between rounds)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser()
    for k, v in dict(hidden=64, layers=2, heads=4, ff=256, batch=256, new=32, repeats=7, seed=0).items():
        ap.add_argument(f"--{k}", type=int, default=v)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from tether.lm.model.hf import HFPolicy, tiny_hf_model
    from tether.lm.model.tokenizer import CharTokenizer, pad_left
    from tether.lm.rollout.engine import RolloutEngine

    tok = CharTokenizer()
    model = tiny_hf_model("qwen2", vocab_size=tok.vocab_size, hidden=args.hidden, layers=args.layers,
                          heads=args.heads, intermediate=args.ff, seed=args.seed).eval()
    rng = random.Random(args.seed)
    prompts = ["S" + ",".join(str(rng.randint(0, 9)) for _ in range(4)) + "?" for _ in range(args.batch)]
    ids, mask = pad_left([tok.encode(p) for p in prompts], tok.pad_id)
    # "sampler": log-probs from the decode loop (like HF, which computes the same softmax while sampling);
    # "auto": the engine default, which in fp32 adds one full-sequence forward for trainer-exact log-probs
    engines = {name: RolloutEngine(precision=args.dtype, backend="native", logprobs=name)
               for name in ("sampler", "auto")}
    # "compiled": the decode-loop log-probs with the torch.compile'd fixed-shape step (tether/lm/rollout/compiled.py)
    engines["compiled"] = RolloutEngine(precision=args.dtype, backend="native", logprobs="sampler", compile=True)
    for engine in engines.values():
        engine.sync_from(HFPolicy(model))
    if args.dtype == "bf16":
        model.to(torch.bfloat16)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = tok.pad_id

    def ours(engine):
        def run():
            g = torch.Generator().manual_seed(0)
            r = engine.generate(ids, mask, max_new_tokens=args.new, eos_id=-1, pad_id=tok.pad_id, generator=g)
            assert r.tokens.shape == (args.batch, args.new)
        return run

    @torch.inference_mode()
    def hf():
        out = model.generate(input_ids=ids, attention_mask=mask.long(), do_sample=True, temperature=1.0, top_k=0,
                             top_p=1.0, max_new_tokens=args.new, min_new_tokens=args.new, use_cache=True,
                             eos_token_id=None, pad_token_id=tok.pad_id)
        assert out.shape == (args.batch, ids.shape[1] + args.new)

    n_tok = args.batch * args.new
    t0 = time.perf_counter()
    ours(engines["compiled"])()  # the first call compiles (a warm on-disk inductor cache makes it shorter)
    compile_s = time.perf_counter() - t0
    wall, cpu, runq = timed_rounds({"ours": ours(engines["sampler"]), "ours_exact": ours(engines["auto"]),
                                    "ours_compiled": ours(engines["compiled"]), "hf": hf}, args.repeats)
    med = lambda d, k: statistics.median(d[k])
    print(json.dumps({
        "bench": "lm_sampler", "dtype": args.dtype, "hidden": args.hidden, "layers": args.layers, "batch": args.batch,
        "new_tokens": args.new, "params": sum(p.numel() for p in model.parameters()), "repeats": args.repeats,
        "ours_tok_s": round(n_tok / med(wall, "ours")), "hf_tok_s": round(n_tok / med(wall, "hf")),
        "ratio": round(ratio(wall["hf"], wall["ours"]), 2), "ratio_cpu": round(ratio(cpu["hf"], cpu["ours"]), 2),
        "ours_tok_cpu_s": round(n_tok / med(cpu, "ours")), "hf_tok_cpu_s": round(n_tok / med(cpu, "hf")),
        "exact_logprobs": engines["auto"].recompute,
        "ratio_exact": round(ratio(wall["hf"], wall["ours_exact"]), 2),
        "ratio_exact_cpu": round(ratio(cpu["hf"], cpu["ours_exact"]), 2),
        "compiled_tok_s": round(n_tok / med(wall, "ours_compiled")),
        "ratio_compiled": round(ratio(wall["hf"], wall["ours_compiled"]), 2),
        "ratio_compiled_cpu": round(ratio(cpu["hf"], cpu["ours_compiled"]), 2),
        "first_compiled_call_s": round(compile_s, 1),
        "runq_wait_frac": round(runq, 3),
    }))


if __name__ == "__main__":
    main()
