"""Timers and memory/FLOP counters for the benchmark (CUDA: synchronized; CPU: process RSS)."""

from __future__ import annotations

import resource
import time

import torch


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # process high-water mark


def timed(fn, device, repeat=1):
    best, out = None, None
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, out


def matmul_peak(device, dtype) -> float:
    """The device's achievable matmul rate (TFLOP/s), the yardstick for 'achieved'."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    reps = 10 if device.type == "cuda" else 3
    dt, _ = timed(lambda: [a @ b for _ in range(reps)], device)
    return 2 * n**3 * reps / dt / 1e12


class StageTimer:
    """Wraps stage functions with synchronized timers (used in a separate, instrumented run)."""

    def __init__(self, device):
        self.device, self.time, self.calls = device, {}, {}
        self.peak = {}  # CUDA only: the most memory allocated while the stage ran (weights included)
        self._undo = []

    def wrap(self, owner, attr, stage):
        original = getattr(owner, attr)

        def wrapper(*args, **kwargs):
            sync(self.device)
            reset_peak(self.device)
            t0 = time.perf_counter()
            out = original(*args, **kwargs)
            sync(self.device)
            self.time[stage] = self.time.get(stage, 0.0) + time.perf_counter() - t0
            self.calls[stage] = self.calls.get(stage, 0) + 1
            if self.device.type == "cuda":
                self.peak[stage] = max(self.peak.get(stage, 0), peak_bytes(self.device))
            return out

        setattr(owner, attr, wrapper)
        self._undo.append((owner, attr, original))

    def restore(self):
        for owner, attr, original in reversed(self._undo):
            if owner.__dict__.get(attr) is not None and isinstance(owner, torch.nn.Module):
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)
        self._undo.clear()


class StageFlops:
    """FlopCounterMode active only inside one function (or everywhere when owner is None)."""

    def __init__(self, owner, attr):
        from torch.utils.flop_counter import FlopCounterMode

        self.owner, self.attr, self.flops = owner, attr, 0
        self.mode = FlopCounterMode(display=False)

    def __enter__(self):
        if self.owner is None:
            self.mode.__enter__()
            return self
        original = getattr(self.owner, self.attr)
        self.original = original
        outer = self

        def counted(*args, **kwargs):
            with outer.mode:  # entering resets the mode's counts: accumulate per call
                out = original(*args, **kwargs)
            outer.flops += outer.mode.get_total_flops()
            return out

        setattr(self.owner, self.attr, counted)
        return self

    def __exit__(self, *exc):
        if self.owner is None:
            self.mode.__exit__(*exc)
            self.flops = self.mode.get_total_flops()
        elif isinstance(self.owner, torch.nn.Module):
            delattr(self.owner, self.attr)
        else:
            setattr(self.owner, self.attr, self.original)
        return False
