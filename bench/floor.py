"""The kernel floor of a run: its matrix products and attention calls, each timed alone.

One call of the run is recorded with a dispatch mode: every matmul-like and attention call, with
its shapes, strides, dtypes and arguments. Each distinct call is then replayed alone on random
inputs of the same layout, with hot caches, and its best time is multiplied by how often it ran.
The sum is what the run would take if nothing but these kernels cost time: no elementwise ops,
no op dispatch, no cache misses. The gap between it and the measured time is what is left to win
without doing fewer FLOPs or using a lower precision.
"""

from __future__ import annotations

import collections
from typing import Callable, Dict

import torch
from measure import timed
from torch.utils._python_dispatch import TorchDispatchMode

# composite ops are seen before they decompose (inference mode), their parts otherwise
KERNELS = {
    "aten.linear.default",
    "aten.addmm.default",
    "aten.mm.default",
    "aten.bmm.default",
    "aten.baddbmm.default",
    "aten.matmul.default",
    "aten.scaled_dot_product_attention.default",
    "aten.conv2d.default",
    "aten._scaled_dot_product_flash_attention_for_cpu.default",
    "aten._scaled_dot_product_flash_attention.default",
    "aten._scaled_dot_product_efficient_attention.default",
    "aten._scaled_dot_product_cudnn_attention.default",
}


def _spec(value):
    """A hashable description of one argument (tensors by layout, lists as tuples)."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), tuple(value.stride()), value.dtype, value.device)
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(_spec(v) for v in value))
    return ("value", value)


def _build(spec):
    kind, *rest = spec
    if kind == "tensor":
        shape, stride, dtype, device = rest
        t = torch.empty_strided(shape, stride, dtype=dtype, device=device)
        if dtype.is_floating_point:
            return t.normal_()
        return t.fill_(1)  # masks: attend everywhere; indices: a valid one
    if kind == "seq":
        return [_build(s) for s in rest[0]]
    return rest[0]


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        if name in KERNELS:
            key = (name, _spec(tuple(args)), tuple(sorted((k, _spec(v)) for k, v in kwargs.items())))
            self.calls[key] += 1
        return func(*args, **kwargs)


def _time_alone(op, args, kwargs, device, budget_s: float) -> float:
    for _ in range(3):
        op(*args, **kwargs)
    once = max(timed(lambda: op(*args, **kwargs), device)[0], 1e-7)
    reps = max(3, min(200, int(budget_s / once)))

    def many():
        for _ in range(reps):
            op(*args, **kwargs)

    return timed(many, device, repeat=3)[0] / reps


def kernel_floor(run: Callable[[], object], device: torch.device, budget_s: float = 0.02, runs: int = 2) -> Dict:
    """Record one call of ``run`` and return the floor in seconds, split by op, with the run's own
    best time from ``runs`` calls just before and just after the replays (so a drifting machine
    does not skew the ratio). Each distinct call is timed for about ``budget_s``."""
    recorder = _Recorder()
    with recorder:
        run()
    measured = timed(run, device, repeat=runs)[0]
    by_op: Dict[str, float] = collections.defaultdict(float)
    for (name, arg_spec, kw_spec), count in recorder.calls.items():
        op = torch.ops.aten
        for part in name.split(".")[1:]:
            op = getattr(op, part)
        args = _build(arg_spec)
        kwargs = {k: _build(s) for k, s in kw_spec}
        by_op[name.split(".")[1]] += _time_alone(op, args, kwargs, device, budget_s / 3) * count
    measured = min(measured, timed(run, device, repeat=runs)[0])
    return {
        "seconds": round(sum(by_op.values()), 4),
        "measured_seconds": round(measured, 4),
        "calls": sum(recorder.calls.values()),
        "distinct_calls": len(recorder.calls),
        "by_op": {k: round(v, 4) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
    }
