#!/usr/bin/env bash
# By hand, not in CI: the float-sensitive tests on an Intel CPU model, from any x86-64 host (an AMD
# EPYC here), through qemu's user-mode emulation. The emulated CPU answers CPUID with GenuineIntel
# and Haswell's features (AVX2, no AVX-512), so torch's kernels, MKL and oneDNN take their Intel
# AVX2 code paths instead of the host's AVX-512 ones.
#   tools/emulated_intel_check.sh [CPU_MODEL] [pytest args...]     (needs `apt-get install qemu-user`)
# CPU_MODEL: Haswell (default) or another `qemu-x86_64 -cpu help` model that TCG runs: no AVX-512.
# /proc/cpuinfo inside qemu-user is still the host's: the CPUID line below is what libraries see.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-Haswell}
shift || true
PY=${PYTHON:-.venv/bin/python}
command -v qemu-x86_64 >/dev/null || { echo "qemu-x86_64 not found: apt-get install -y qemu-user" >&2; exit 2; }
# (features TCG cannot emulate are dropped, so qemu does not warn about each on every start)
CPU="$MODEL,-pcid,-x2apic,-tsc-deadline,-hle,-rtm,-invpcid,-rdseed,-xsavec,-3dnowprefetch"
QEMU=(qemu-x86_64 -cpu "$CPU")
"${QEMU[@]}" "$PY" - <<'PY'
import ctypes, mmap, torch
# CPUID leaf 0 (vendor string) through a tiny machine-code stub: what MKL and oneDNN dispatch on
code = bytes([0x53, 0x31, 0xC0, 0x0F, 0xA2, 0x89, 0x1F, 0x89, 0x57, 0x04, 0x89, 0x4F, 0x08, 0x5B, 0xC3])
buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
buf.write(code)
out = ctypes.create_string_buffer(12)
ctypes.CFUNCTYPE(None, ctypes.c_void_p)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))(ctypes.addressof(out))
print(f"CPUID vendor {out.raw.decode()}; torch {torch.__version__} CPU capability {torch.backends.cpu.get_cpu_capability()}")
PY
if [ $# -eq 0 ]; then
  set -- -q tests/test_spatial_kernels.py tests/test_golden.py tests/test_golden_extra.py
fi
# Inductor caches compiled kernels by source, not by the ISA they were built for: a kernel the host
# built with AVX-512 would be loaded again (illegal instruction). A cache of its own for this CPU model.
# And Inductor builds with -march=native, which g++ (run natively, outside qemu) reads as the host's
# AVX-512: the C++ kernels are built for the emulated model instead.
case "$MODEL" in
  Haswell*) MARCH=haswell ;;
  Broadwell*) MARCH=broadwell ;;
  Skylake-Client*) MARCH=skylake ;;
  *) echo "no gcc -march known for $MODEL: use Haswell, Broadwell or Skylake-Client" >&2; exit 2 ;;
esac
export TORCHINDUCTOR_CPP_MARCH=${TORCHINDUCTOR_CPP_MARCH:-$MARCH}
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-${TMPDIR:-/tmp}/nova-inductor-emulated-$MODEL}
exec "${QEMU[@]}" "$PY" -m pytest "$@"
