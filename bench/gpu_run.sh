#!/usr/bin/env bash
# Every GPU figure of issue 15 as one prepared run on a lent machine (no network there):
#   bash bench/gpu_run.sh                       # all parts, in this order:
#     osp480   33 x 480 x 768 at 64/25 and 128/100 (--demo): plain, fast, each switch, the Triton
#              head rows (when triton imports), stages, kernel floor, official pipeline alternately
#     sdxl1024 1024 x 1024 text-to-image at its default steps, against the official pipeline
#     modes    the spatial encoder's modes (bench/speed_modes.py): each SDPA kernel, fp8 matmuls,
#              SageAttention (when its wheel travels in .whl/), time and difference from the
#              default on the golden cases and on osp480 at 64/25
#     profile  torch.profiler summaries of osp480: CUDA graphs on, off, and the Triton head
#   PARTS="osp480" bash bench/gpu_run.sh        # some parts only (one command stays under 10 min)
# diffusers (and importlib_metadata, triton if the machine lacks it, sageattention) travel as wheels in .whl/, an
# official NOVA checkout's diffnext/ in .official/ for the baseline (carry both). Results land in
# $OUT (bench/results/ when run here): <preset>.json/.md/.log, profile-*.md/.json.
# BENCH_ARGS adds bench.py options to both presets, e.g. "--rounds 2".
# SMOKE=1 checks this script's plumbing on a CPU in a minute: the golden tiny checkpoints at 2/2
# steps instead of the presets (no 128/100, long video or official runs).
set -uo pipefail
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
PARTS=${PARTS:-osp480 sdxl1024 modes profile}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi -L || echo "no nvidia-smi"
python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
python3 -c "import triton; print('triton', triton.__version__)" || echo "triton missing: no Triton-head rows (put its wheel in .whl/)"
python3 -c "import sageattention" 2>/dev/null && echo "sageattention importable" || echo "sageattention missing: no SageAttention rows (put sageattention-1.0.6-py3-none-any.whl in .whl/)"
export PYTHONUNBUFFERED=1
OFFICIAL=()
[ -d .official ] && OFFICIAL=(--official .official) || echo ".official missing: no official baseline"
OSP=(--preset gpu-osp480 --demo --long) SDXL=(--preset gpu-sdxl1024) PROFILE=(--preset gpu-osp480)
MODES=(--preset gpu-osp480 --repeat 1)
if [ "${SMOKE:-0}" = 1 ]; then
  OFFICIAL=() OSP=(--checkpoint tests/golden/t2v_tiny --steps 2 2) SDXL=(--checkpoint tests/golden/t2i_tiny --steps 2 2)
  PROFILE=(--checkpoint tests/golden/t2v_tiny --steps 2 2) MODES=(--preset cpu-mid --steps 2 2 --repeat 1 --no-golden)
fi
for part in $PARTS; do
  start=$SECONDS
  case $part in
    osp480)
      python3 bench/bench.py "${OSP[@]}" --repeat 1 --rounds 2 "${OFFICIAL[@]}" --out "$OUT" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu-osp480.log" ;;
    sdxl1024)
      python3 bench/bench.py "${SDXL[@]}" --quick --floor --repeat 1 --rounds 2 "${OFFICIAL[@]}" --out "$OUT" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu-sdxl1024.log" ;;
    modes)
      python3 bench/speed_modes.py "${MODES[@]}" --out "$OUT" 2>&1 | grep -v "^NOVA: frame" | tee "$OUT/speed-modes.log" ;;
    profile)
      python3 bench/profile_run.py "${PROFILE[@]}" --out "$OUT" 2>&1 | tail -n 60
      python3 bench/profile_run.py "${PROFILE[@]}" --no-graphs --out "$OUT" 2>&1 | tail -n 60
      if python3 -c "import triton" 2>/dev/null; then
        python3 bench/profile_run.py "${PROFILE[@]}" --triton-head --out "$OUT" 2>&1 | tail -n 60
      fi ;;
    *) echo "unknown part $part (osp480, sdxl1024, modes, profile)"; exit 2 ;;
  esac
  echo "== $part: $((SECONDS - start)) s"
done
