"""Compiles every Triton-head kernel for a Hopper GPU (sm_90) without one: Triton lowers to PTX and
runs its bundled ptxas, which catches what the interpreter does not (types, layouts, shared
memory). Run by tests/test_triton_head.py in a process without TRITON_INTERPRET. Tile sizes are
TritonHead's GPU ones; BLOCK is the osp480 head's width (1280) rounded up."""

import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from nova.head import triton_kernels as k
from nova.head.triton import TritonHead

HOPPER = GPUTarget("cuda", 90, 32)


def compile_all(dtype: str) -> int:
    p, h = "*" + dtype, TritonHead
    rows = {"ROWS": h.rows_per_program, "BLOCK": 2048}
    ints = {"rows": "i32", "x_rows": "i32", "mod_stride": "i32", "width": "i32", "eps": "fp32"}
    jobs = [
        (k.modulated_layer_norm, {"x_ptr": p, "scale_ptr": p, "shift_ptr": p, "out_ptr": p, **ints}, rows),
        (
            k.norm_gate_residual,
            {"h_ptr": p, "weight_ptr": p, "bias_ptr": p, "gate_ptr": p, "x_ptr": p, "out_ptr": p, **ints},
            rows,
        ),
    ]
    for a_type in ("*fp32", p):  # the patch embed reads the float32 tokens; the others the model's dtype
        for silu in (True, False):
            jobs.append(
                (
                    k.linear,
                    {
                        "a_ptr": a_type,
                        "w_ptr": p,
                        "bias_ptr": p,
                        "out_ptr": p,
                        "rows": "i32",
                        "n_out": "i32",
                        "n_in": "i32",
                    },
                    {
                        "SILU": silu,
                        "PRECISION": "ieee" if dtype == "fp32" else "tf32",
                        "BLOCK_M": h.block_m,
                        "BLOCK_N": h.block_n,
                        "BLOCK_K": h.block_k,
                    },
                )
            )
    for two in (True, False):
        for noise in (True, False):
            jobs.append(
                (
                    k.guided_step,
                    {
                        "pred_ptr": p,
                        "x_ptr": "*fp32",
                        "noise_ptr": "*fp32",
                        "out_ptr": "*fp32",
                        "numel": "i32",
                        "a": "fp32",
                        "b": "fp32",
                        "std": "fp32",
                        "scale": "fp32",
                    },
                    {"TWO_PASSES": two, "NOISE": noise, "BLOCK": 1024},
                )
            )
    for fn, sig, consts in jobs:
        sig = {**sig, **{name: "constexpr" for name in consts}}
        compiled = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts), target=HOPPER)
        assert compiled.asm["cubin"], fn
    return len(jobs)


if __name__ == "__main__":
    print("compiled", sum(compile_all(d) for d in sys.argv[1:]), "kernels for sm_90")
