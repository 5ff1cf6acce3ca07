"""Markdown tables (mean +- sd over seeds) from the toy sweep's JSONL (benchmarks/flow_toy_sweep.py).

Usage: python benchmarks/flow_toy_table.py runs/flow_toy/results.jsonl
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

KEYS = ("realised_kl", "realised_kl_tail_mean", "lambda", "true_reward", "believed_q", "on_support")


def fmt(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    m = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.3g} ± {sd:.2g}"


def setting(r: dict) -> str:
    if r["method"] == "qam":
        return f"QAM β = {r['beta']:g}"
    if r["method"] == "trqam":
        return f"TRQAM{'-log' if r.get('log_dual') else ''} ε = {r['kl_budget']:g}"
    if r["method"] == "fql":
        return f"FQL α = {r['alpha']:g}"
    return "BC"


def main() -> None:
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["critic"], r["critic_error"], r["q_scale"], setting(r))].append(r)
    order = {"BC": 0, "FQL": 1, "QAM": 2, "TRQAM": 3, "TRQAM-log": 4}

    def key(k: tuple) -> tuple:
        critic, c, q, name = k
        return (critic != "misspecified", q, c, order[name.split()[0]],
                float(name.split("= ")[-1]) if "=" in name else 0.0)

    current = None
    for (critic, c, q, name), rs in sorted(groups.items(), key=lambda kv: key(kv[0])):
        if (critic, c, q) != current:
            current = (critic, c, q)
            print(f"\n**critic {critic}, c = {c:g}, Q x {q:g}**\n")
            print("| setting | seeds | realised KL (end) | KL tail mean | λ_eff (end) | true E[r] "
                  "| believed E[Q̂] | on-support |")
            print("|---|---|---|---|---|---|---|---|")
        cells = " | ".join(fmt([r[k] for r in rs]) for k in KEYS)
        print(f"| {name} | {len(rs)} | {cells} |")


if __name__ == "__main__":
    main()
