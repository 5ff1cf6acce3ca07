"""The rows of a `tether lm train` run that docs/results/real-lm.md reports (reward, KL, eval, length, timings)."""

import json
import sys
from pathlib import Path

KEEP = ("reward/", "kl/", "eval/", "rollout/len_mean", "rollout/entropy", "time/", "grad/norm", "mismatch/delta_mean")

run = Path(sys.argv[1])
for name in ("metrics.jsonl", "eval.jsonl"):
    for line in (run / name).read_text().splitlines():
        row = json.loads(line)
        print(json.dumps({"file": name, **{k: v for k, v in row.items() if k == "step" or k.startswith(KEEP)}}))
