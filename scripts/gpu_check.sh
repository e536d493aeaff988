#!/usr/bin/env bash
# Check oasis-ray's GPU paths on a machine with an NVIDIA GPU but no Ray or vLLM.
#
#   bash scripts/gpu_check.sh                       # read-only
#   OASIS_GPU_MAY_SET=1 bash scripts/gpu_check.sh   # also lock a clock and set a power limit, each restored
#
# It makes a small venv with only numpy, pandas, pydantic, nvidia-ml-py and
# pytest (once; OASIS_GPU_CHECK_VENV sets where, default
# ~/.cache/oasis-ray/gpu-check-venv; OASIS_GPU_CHECK_PYTHON=python3 uses that
# interpreter as it is, with no venv), prints what NVML measures here (power,
# the energy counter's delta over a few seconds, the clocks seen, power limits,
# MIG devices), then runs tests/gpu: NVML reads, the energy counter, MIG
# enumeration, clock and power-limit read-back. It changes no clock, power
# limit or MIG setting unless OASIS_GPU_MAY_SET=1. Without a usable GPU every
# test is skipped with NVML's reason and the script still exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
packages=(numpy pandas "pydantic>=2,<3" nvidia-ml-py pytest)

if [ -n "${OASIS_GPU_CHECK_PYTHON:-}" ]; then
  python_bin="$OASIS_GPU_CHECK_PYTHON"
else
  venv="${OASIS_GPU_CHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/oasis-ray/gpu-check-venv}"
  stamp="$venv/.oasis-gpu-check-$(printf '%s ' "${packages[@]}" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "gpu_check: creating $venv (${packages[*]})"
    "$(command -v python3.11 || command -v python3)" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "${packages[@]}"
    rm -f "$venv"/.oasis-gpu-check-*
    touch "$stamp"
  fi
  python_bin="$venv/bin/python"
fi

if [ "${OASIS_GPU_MAY_SET:-0}" = 1 ]; then
  echo "gpu_check: OASIS_GPU_MAY_SET=1: tests may lock a clock and set a power limit (each restored)"
else
  echo "gpu_check: read-only (OASIS_GPU_MAY_SET=1 would also test setting a clock and a power limit)"
fi
echo "gpu_check: what NVML measures on this machine"
"$python_bin" -m oasis_ray.telemetry.gpu_report --seconds 3
echo "gpu_check: tests/gpu"
# --confcutdir keeps tests/conftest.py (the live Ray/vLLM session) out; -rs prints each skip's reason.
"$python_bin" -m pytest tests/gpu --confcutdir=tests/gpu -p no:cacheprovider -q -rs
echo "gpu_check: done in $((SECONDS - started)) s"
