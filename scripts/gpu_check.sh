#!/usr/bin/env bash
# The GPU path, checked on a user's machine with a GPU (scripts/gpu_check.py says what and how):
#   scripts/gpu_check.sh [--weights PATH] [--train-limit N]
# Without a GPU it says so in one line and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" scripts/gpu_check.py "$@"
