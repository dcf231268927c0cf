#!/usr/bin/env bash
# The GPU benchmark as one prepared run on a lent machine (no network there):
# diffusers (and importlib_metadata) travel as wheels in .whl/, an official NOVA checkout's
# diffnext/ in .official/ for the baseline. Results land in $OUT (and bench/results/ when run here).
# PRESET picks the model (gpu-osp480, gpu-sdxl1024); BENCH_ARGS adds options, e.g.
# "--quick --floor --rounds 2" (short run with the kernel floor).
set -uo pipefail
OUT=${OUT:-bench/results}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi -L
python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
export PYTHONUNBUFFERED=1
PRESET=${PRESET:-gpu-osp480}
python3 bench/bench.py --preset "$PRESET" --long --repeat 1 --official .official --out "$OUT" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/$PRESET.log"
