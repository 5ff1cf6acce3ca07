#!/usr/bin/env bash
# Theory checks of docs/results/trqam.md: the exact tests, the discretisation table, and the dual traces.
set -euo pipefail
OMP_NUM_THREADS=1 python -m pytest tests/flow/test_trqam.py tests/flow/test_sampler.py tests/flow/toy/test_analytic.py -q
OMP_NUM_THREADS=1 python benchmarks/flow_theory_table.py
OMP_NUM_THREADS=1 python benchmarks/flow_toy_traces.py --seed 0
