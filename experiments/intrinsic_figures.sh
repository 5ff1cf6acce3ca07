#!/usr/bin/env bash
# Figures of docs/results/intrinsic.md from the outputs of intrinsic_prior.sh, intrinsic_grid.sh and intrinsic_lens.sh:
#   intrinsic_prior.png   within-group vs global AUROC of each label-free reward, per base
#   intrinsic_curves.png  held-out sampled accuracy vs GRPO step, mean over seeds, per base and reward
#   intrinsic_lens_*.png  the lens figures of the medium base with the ground-truth-run envelope
set -euo pipefail
root=${1:-runs/intrinsic}
fig=${2:-docs/results/figures}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$fig"
"$PY" - "$root" "$fig" <<'PYEOF'
import json, sys
from pathlib import Path
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
root, fig = Path(sys.argv[1]), Path(sys.argv[2])
bases = [b for b in ("strong", "medium", "weak", "anti") if (root / "prior" / f"{b}.jsonl").exists()]
f, axes = plt.subplots(1, len(bases), figsize=(3.2 * len(bases), 3.2), sharey=True)
for ax, b in zip(np.atleast_1d(axes), bases):
    rows = [json.loads(l) for l in (root / "prior" / f"{b}.jsonl").read_text().splitlines()][:-1]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["auroc"] for r in rows], 0.4, label="global", color="0.6")
    ax.bar(x + 0.2, [r["auroc_within"] for r in rows], 0.4, label="within group", color="C0")
    ax.axhline(0.5, color="k", lw=0.8)
    ax.set_xticks(x, [r["reward"] for r in rows], rotation=90, fontsize=7)
    ax.set_title(f"{b} base", fontsize=9)
axes[0].set_ylabel("AUROC for correctness")
axes[0].legend(fontsize=7)
f.tight_layout(); f.savefig(fig / "intrinsic_prior.png", dpi=80); plt.close(f)

order = ["correct", "lp", "ent", "avg_ent", "renyi", "cp", "self_certainty", "majority", "random", "format"]
bases = [b for b in ("medium", "anti", "weak", "strong") if (root / b).exists()]
f, axes = plt.subplots(1, len(bases), figsize=(3.4 * len(bases), 3.2), sharey=True)
for ax, b in zip(np.atleast_1d(axes), bases):
    for i, r in enumerate(order):
        curves = []
        for s in sorted((root / b / r).glob("s[0-9]")):
            ev = [json.loads(l) for l in (s / "eval.jsonl").read_text().splitlines()] if (s / "eval.jsonl").exists() else []
            if ev and ev[-1]["step"] == 60:
                curves.append([(e["step"], e["eval/heldout/sample_acc"]) for e in ev])
        if curves:
            a = np.array(curves)
            ax.plot(a[0, :, 0], a[:, :, 1].mean(0), color=f"C{i}", lw=2 if r in ("correct", "random") else 1,
                    ls="--" if r in ("random", "format") else "-", label=f"{r} ({len(a)})")
    ax.set_title(f"{b} base", fontsize=9); ax.set_xlabel("GRPO step")
    ax.legend(fontsize=6)
np.atleast_1d(axes)[0].set_ylabel("held-out sampled accuracy (T=1)")
f.tight_layout(); f.savefig(fig / "intrinsic_curves.png", dpi=80); plt.close(f)
PYEOF
for k in phase dtw metrics; do
  [[ -f "$root/lens/medium-gt/lens_$k.png" ]] && cp "$root/lens/medium-gt/lens_$k.png" "$fig/intrinsic_lens_$k.png"
done
ls -la "$fig"/intrinsic_*.png
