#!/usr/bin/env bash
# Build the book into _build/html, executing every chapter (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh
.venv/bin/jupyter-book build . -W -n --keep-going "$@"
echo "book: $(pwd)/_build/html/index.html"
