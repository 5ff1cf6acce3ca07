"""Model FLOP utilisation of a TinyLM forward+backward step, fp32 and bf16 autocast, vs a measured matmul peak.

Peak: median FLOP/s of a 2048^3 `a @ b` in the same process and dtype (1 thread). Model FLOPs per token
(PaLM, arXiv:2204.02311 App. B): 6 N + 12 L d T, N = matmul parameters (embeddings counted once, tied).
Workload: d=128, 4 layers, 4 heads, ff=512 (the 1M-parameter
model (b)), batch 128 x 48 tokens, next-token cross-entropy, no optimizer step. Wall and CPU time are
both reported; MFU uses CPU time (robust to other jobs on the shared machine).
Also times the same architecture as a transformers Llama (no qkv bias, as TinyLM) under the same load.
Prints one JSON line: mfu (fp32), mfu_bf16, achieved and peak GFLOP/s, speedup_vs_hf. `--compile` runs TinyLM's
blocks through torch.compile (`optim.compile`; the compile falls in the warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def cpu_time(fn, repeats: int, warmup: int = 2) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def matmul_peak(dtype: torch.dtype, n: int = 2048) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    _, c = cpu_time(lambda: a @ b, repeats=3, warmup=1)
    return 2 * n ** 3 / c


def main() -> None:
    ap = argparse.ArgumentParser()
    for k, v in dict(d=128, layers=4, heads=4, ff=512, batch=128, seq=48, repeats=5).items():
        ap.add_argument(f"--{k}", type=int, default=v)
    ap.add_argument("--compile", action="store_true",
                    help="TinyLM.compile_blocks() (optim.compile); compiles in warm-up")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from tether.lm.model.tinylm import ModelConfig, TinyLM

    cfg = ModelConfig(vocab_size=32, d_model=args.d, n_layers=args.layers, n_heads=args.heads, n_kv_heads=args.heads,
                      d_ff=args.ff, max_seq_len=args.seq)
    model = TinyLM(cfg)
    if args.compile:
        model.compile_blocks()
    n_matmul = args.layers * (4 * args.d ** 2 + 3 * args.d * args.ff) + cfg.vocab_size * args.d
    tokens = args.batch * args.seq
    flops = tokens * (6 * n_matmul + 12 * args.layers * args.d * args.seq)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq))
    from tether.lm.model.hf import tiny_hf_model  # the same architecture through transformers, for reference
    hf = tiny_hf_model("llama", vocab_size=cfg.vocab_size, hidden=args.d, layers=args.layers, heads=args.heads,
                       intermediate=args.ff, max_positions=args.seq).train()
    out = {"bench": "lm_mfu", "compiled": args.compile, "params": model.num_params(), "tokens_per_step": tokens,
           "gflop_per_step": flops / 1e9}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        def step(dtype=dtype):
            model.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                logits = model(ids[:, :-1])
            F.cross_entropy(logits.float().reshape(-1, cfg.vocab_size), ids[:, 1:].reshape(-1)).backward()

        def hf_step(dtype=dtype):
            hf.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                hf(input_ids=ids, labels=ids).loss.backward()

        wall, cpu = cpu_time(step, args.repeats)
        _, hf_cpu = cpu_time(hf_step, args.repeats)
        peak = matmul_peak(dtype)
        sfx = "" if name == "fp32" else "_bf16"
        out[f"hf_tok_per_cpu_s{sfx}"] = round(tokens / hf_cpu)
        out[f"speedup_vs_hf{sfx}"] = round(hf_cpu / cpu, 2)
        out.update({f"mfu{sfx}": round(flops / cpu / peak, 3), f"achieved_gflop_s{sfx}": round(flops / cpu / 1e9, 1),
                    f"peak_gflop_s{sfx}": round(peak / 1e9, 1), f"step_s{sfx}": round(wall, 4),
                    f"step_cpu_s{sfx}": round(cpu, 4), f"tok_per_cpu_s{sfx}": round(tokens / cpu)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
