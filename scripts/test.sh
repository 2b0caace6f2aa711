#!/usr/bin/env bash
# Run the whole test suite: unit tests of ftbook + every chapter notebook under nbval (2 workers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
export MPLBACKEND=Agg
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"
