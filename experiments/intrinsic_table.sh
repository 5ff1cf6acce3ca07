#!/usr/bin/env bash
# Summary table of the intrinsic grid (runs/intrinsic/<base>/<reward>/s<seed>): per cell, the number of finished
# seeds and mean +- sd over seeds of the change (step 60 minus step 0) of held-out sampled accuracy (T=1, k=4 on
# 128 fixed problems), greedy accuracy, the final completion length and the final rollout entropy, plus the peak
# sampled-accuracy change over the evaluations (what best-checkpoint reporting would show). Markdown to stdout.
set -euo pipefail
root=${1:-runs/intrinsic}
PY=${PYTHON:-.venv/bin/python}
"$PY" - "$root" <<'PYEOF'
import json, sys
from pathlib import Path
import numpy as np
root = Path(sys.argv[1])
order = ["correct", "lp", "ent", "avg_ent", "renyi", "cp", "self_certainty", "majority", "random", "format"]
print("| base | reward | seeds | Δ sampled acc | peak Δ sampled | Δ greedy acc | final len | final entropy |")
print("|---|---|---|---|---|---|---|---|")
for base in ["strong", "medium", "weak", "anti"]:
    for reward in order:
        cells = []
        for s in sorted((root / base / reward).glob("s[0-9]")):
            ev = [json.loads(l) for l in (s / "eval.jsonl").read_text().splitlines()] if (s / "eval.jsonl").exists() else []
            if not ev or ev[-1]["step"] != 60:
                continue
            m = [json.loads(l) for l in (s / "metrics.jsonl").read_text().splitlines()]
            acc = [e["eval/heldout/sample_acc"] for e in ev]
            cells.append((acc[-1] - acc[0], max(acc) - acc[0],
                          ev[-1]["eval/heldout/greedy_acc"] - ev[0]["eval/heldout/greedy_acc"],
                          ev[-1]["eval/heldout/len_mean"], np.mean([r["rollout/entropy"] for r in m[-5:]])))
        if not cells:
            continue
        a = np.array(cells)
        f = lambda i, p=2: f"{a[:, i].mean():+.{p}f} ± {a[:, i].std():.{p}f}" if len(a) > 1 else f"{a[0, i]:+.{p}f}"
        print(f"| {base} | {reward} | {len(a)} | {f(0)} | {f(1)} | {f(2)} | {a[:, 3].mean():.1f} | {a[:, 4].mean():.3f} |")
PYEOF
