#!/usr/bin/env bash
# By hand, not in CI: the real-ComfyUI tests against our declared minimum, ComfyUI 0.3.64.
#   tools/check_comfyui_minimum.sh /path/to/ComfyUI-v0.3.64-checkout [venv folder]
# Builds a venv with that checkout's requirements (torch 2.14.1 + torchvision 0.29.1 unless
# TORCH_SPEC says otherwise), then runs tests/test_real_comfyui.py with this repo's test venv.
set -euo pipefail
cd "$(dirname "$0")/.."
COMFY=${1:?usage: $0 COMFYUI_DIR [VENV]}
VENV=${2:-$COMFY/.venv-nova-check}
grep -q '__version__ = "0.3.64"' "$COMFY/comfyui_version.py" || echo "note: $COMFY is not ComfyUI 0.3.64"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q ${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
  "$VENV/bin/python" -m pip install -q --no-deps "torchaudio==2.11.0"  # (see .ci/run)
  grep -vE '^(torch|torchvision|torchaudio)$' "$COMFY/requirements.txt" > "$VENV/comfy-requirements.txt"
  "$VENV/bin/python" -m pip install -q -r "$VENV/comfy-requirements.txt" -r requirements.txt
fi
COMFYUI_DIR="$COMFY" COMFYUI_PYTHON="$VENV/bin/python" NOVA_REQUIRE_COMFYUI=1 \
  python -m pytest -q -rs tests/test_real_comfyui.py
