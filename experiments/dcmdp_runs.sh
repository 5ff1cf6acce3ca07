#!/usr/bin/env bash
# DCMDP experiments (issue 6, docs/results/dcmdp.md): GRPO of the shipped medium base on running sums with a
# low-precision rollout engine, with each train/inference-mismatch correction. Every cell is one
# `tether lm train` run (60 steps of 16 prompts x G=8, gsm-tiny otherwise; eval of 128 held-out + 128 OOD
# problems with the rollout engine before and after training, final checkpoint saved), then the final
# weights re-evaluated with the fp32 engine (experiments/dcmdp_eval.py -> RUN/eval_fp32.json).
#
# usage: experiments/dcmdp_runs.sh GROUP [RUNS_ROOT]     GROUP in: fp8s0 int4 fp8seeds int4seeds lambda csweep bf16 extra controls variants all
# Runs at most P (default 2) processes at once (one torch thread each); a cell whose run dir already holds
# checkpoints/ is skipped, so the script can be re-run after an interruption. The exact command of each cell
# is appended to RUNS_ROOT/commands.txt. Aggregate with experiments/dcmdp_aggregate.py RUNS_ROOT.
set -euo pipefail
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
export PATH="$PWD/.venv/bin:$PATH"
group=${1:-all}
root=${2:-runs/dcmdp}
mkdir -p "$root"
STEPS=${STEPS:-60}
COMMON="--preset gsm-tiny --steps $STEPS --eval.every 0 --eval.n_prompts 128 --samples_every 0"
CORRS="none tis_token mis_token icepop dcmdp dcmdp+tis_token"

cells=()
add() {  # add NAME SEED ARGS...
  local name=$1 seed=$2; shift 2
  cells+=("tether lm train $COMMON --run.seed $seed --run.dir $root/$name/s$seed $*")
}

# Groups in priority order (the order they ran in for docs/results/dcmdp.md).
if [[ $group == fp8s0 || $group == all ]]; then      # head-to-head at fp8 (paper Table 2 analogue), seed 0
  for c in $CORRS; do add "fp8_$c" 0 --rollout.precision fp8 --correction.name $c; done
fi
if [[ $group == int4 || $group == all ]]; then       # collapse check at the largest mismatch, seed 0
  for c in $CORRS; do add "int4_$c" 0 --rollout.precision int4 --correction.name $c; done
fi
if [[ $group == fp8seeds || $group == all ]]; then   # seeds 1, 2 of the fp8 head-to-head
  for s in 1 2; do for c in $CORRS; do add "fp8_$c" $s --rollout.precision fp8 --correction.name $c; done; done
fi
if [[ $group == int4seeds || $group == all ]]; then  # seeds 1, 2 of int4 none vs dcmdp
  for s in 1 2; do for c in none dcmdp; do add "int4_$c" $s --rollout.precision int4 --correction.name $c; done; done
fi
if [[ $group == lambda || $group == all ]]; then     # dual dynamics: normalised step; a fixed large lambda (E3)
  add "int4_dcmdp_norm" 0 --rollout.precision int4 --correction.name dcmdp --correction.normalized
  add "int4_dcmdp_fixed10" 0 --rollout.precision int4 --correction.name dcmdp --correction.lambda_init 10 \
      --correction.lambda_min 10 --correction.lambda_max 10
fi
if [[ $group == csweep || $group == all ]]; then     # tolerance region at int4: c = {0.5,1,2,4} x delta0 (0.0169)
  for c in 0.0085 0.0169 0.0338 0.0676; do
    add "int4_dcmdp_c$c" 0 --rollout.precision int4 --correction.name dcmdp --correction.c $c
  done
fi
if [[ $group == bf16 || $group == all ]]; then       # bf16 engine (paper Table 1 analogue), seed 0
  for c in none dcmdp; do add "bf16_$c" 0 --rollout.precision bf16 --correction.name $c; done
fi
if [[ $group == extra ]]; then                       # run after "all" while time remained (not in "all")
  for s in 1 2; do for c in tis_token dcmdp+tis_token; do
    add "int4_$c" $s --rollout.precision int4 --correction.name $c; done; done
  add "fp8_dcmdp_norm" 0 --rollout.precision fp8 --correction.name dcmdp --correction.normalized
  for v in token_to_go sequence_reward differentiable; do
    add "int4_dcmdp_$v" 0 --rollout.precision int4 --correction.name dcmdp --correction.variant $v
  done
  for s in 1 2; do for c in mis_token icepop; do
    add "int4_$c" $s --rollout.precision int4 --correction.name $c; done; done
  for s in 1 2; do for c in none dcmdp; do add "bf16_$c" $s --rollout.precision bf16 --correction.name $c; done; done
fi
if [[ $group == controls ]]; then                    # lambda = 0 through the DCMDP code path; the loss-term variant
  add "int4_dcmdp_lam0" 0 --rollout.precision int4 --correction.name dcmdp --correction.lambda_init 0 \
      --correction.lambda_max 0
  add "int4_dcmdp_differentiable" 0 --rollout.precision int4 --correction.name dcmdp --correction.variant differentiable
fi
if [[ $group == variants ]]; then                    # E7 shaping variants at int4 (not in "all")
  for v in token_to_go sequence_reward differentiable; do
    add "int4_dcmdp_$v" 0 --rollout.precision int4 --correction.name dcmdp --correction.variant $v
  done
fi

run_cell() {
  local cmd=$1 dir
  dir=$(sed -E 's/.*--run\.dir ([^ ]+).*/\1/' <<<"$cmd")
  if [[ -d $dir/checkpoints ]]; then echo "skip $dir"; return 0; fi
  rm -rf "$dir"; mkdir -p "$(dirname "$dir")"
  echo "$cmd" >>"$root/commands.txt"
  echo "start $dir"
  $cmd >"$dir.log" 2>&1 || { echo "FAILED $dir (see $dir.log)"; return 0; }
  python experiments/dcmdp_eval.py "$dir" --precision fp32 >>"$dir.log" 2>&1 || echo "EVAL FAILED $dir"
}
export -f run_cell; export root
printf '%s\n' "${cells[@]}" | xargs -P "${P:-2}" -I{} bash -c 'run_cell "$1"' _ {}
