#!/usr/bin/env bash
# One-time setup on a fresh machine; re-running it is fast and changes nothing.
# Creates .venv in the repo, installs oasis-ray with the vLLM build that fits the
# machine (GPU when nvidia-smi sees one, CPU otherwise), removes the torchvision /
# torchaudio / torchcodec wheels that pip drags in for another torch and that
# break `import transformers` on the CPU build, and builds the embedded model.
set -euo pipefail
cd "$(dirname "$0")/.."

python_bin="${OASIS_PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ -n "${OASIS_ENGINE:-}" ]; then
  engine="$OASIS_ENGINE"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  engine=gpu
else
  engine=cpu
fi

stamp=".venv/.oasis-setup-$engine-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "oasis-ray setup: installing ($engine engine) into .venv, a few minutes on first run"
  [ -x .venv/bin/python ] || "$python_bin" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[$engine,test]"
  if [ "$engine" = cpu ]; then
    .venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
  fi
  .venv/bin/python -c "import transformers, vllm, ray.serve.llm" >/dev/null
  rm -f .venv/.oasis-setup-*
  touch "$stamp"
fi
.venv/bin/python -m oasis_ray.embedded_model >/dev/null
echo "oasis-ray setup: ready ($engine engine, model at $(.venv/bin/python -m oasis_ray.embedded_model))"
