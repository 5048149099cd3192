#!/usr/bin/env bash
# The whole test suite: install, check notebooks and gcav_nb/ are in sync, run every notebook at SCALE=ci + pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
bash tools/install_browser.sh      # Debian chromium + chromedriver for the docs browser test
. .venv/bin/activate
export GCAV_NB_SCALE=ci MPLBACKEND=Agg
python tools/check_sync.py
python -m pytest tests/ -ra --durations=10 "$@"
