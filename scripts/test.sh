#!/usr/bin/env bash
# Run the whole test suite: unit tests of ftbook + every chapter notebook under nbval (2 workers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
# Two pytest workers on a 2-core machine: one BLAS/OpenMP thread each. Oversubscribed torch
# threads spin against each other and run several times slower.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"
