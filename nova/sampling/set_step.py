"""One set step of the fast path on fixed buffers, and its replay as CUDA graphs.

A set step embeds the partial latent and runs the spatial encoder (its last block on the predicted
tokens only) up to the diffusion head's condition; the diffusion loop then denoises those tokens
and they are scattered into the latent. The spatial half's shapes depend only on the known-token
count K and the predicted count n, which the mask schedule fixes: the same (K, n) comes round once
per frame. So each shape is captured once as a CUDA graph and replayed for every later frame: one
launch in place of ~500 kernels, with no Python between them. The diffusion loop has its own graphs
(nova/sampling/fast.py's GraphedLoop), one per bucket of n, which a frame's set steps share: a capture costs
about as much CPU time as running the step eagerly, so fewer, shared graphs cost less to capture.
Nothing between two set steps waits for the GPU.

The interface is :class:`StepBuffers`: it keeps one set of input buffers per shape, copies a
step's inputs into them and runs the step on them. :class:`GraphedSteps` (CUDA) captures the step
on those buffers and replays it; :class:`StepBuffers` itself, its twin on every device, runs the
same code on the same buffers eagerly, so the CPU tests exercise everything but the capture.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..models.embeddings import patchify, unpatchify

log = logging.getLogger("nova")

Key = Tuple[Tuple[Tuple[int, ...], torch.dtype], ...]


class StepBuffers:
    """Runs ``step(*buffers)`` after copying the inputs into buffers kept per input shape; returns
    a tensor the caller owns. This class runs the step eagerly (any device)."""

    def __init__(self, step: Callable[..., torch.Tensor]):
        self.step = step
        self.buffers: Dict[Key, List[torch.Tensor]] = {}

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        key = tuple((tuple(t.shape), t.dtype) for t in inputs)
        buffers = self.buffers.get(key)
        if buffers is None:
            buffers = self.buffers[key] = [torch.empty_like(t, memory_format=torch.contiguous_format) for t in inputs]
        for buf, value in zip(buffers, inputs):
            buf.copy_(value)
        return self.run(key, buffers)

    def run(self, key: Key, buffers: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.step(*buffers)


class GraphedSteps(StepBuffers):
    """:class:`StepBuffers` with the step captured once per shape as a CUDA graph and replayed.

    The first call of a run is eager (on the capture stream), so that lazy initialisation (library
    handles and workspaces, memoized position tables) happens outside any capture. Every graph
    draws from one memory pool: they run one at a time and their outputs are copied out before the
    next replay, so intermediates can share memory. A capture that fails (an op that cannot be
    captured, e.g. weights streamed from the CPU) switches this run to the eager step, with a
    warning; the result stays the same."""

    def __init__(self, step: Callable[..., torch.Tensor], device: torch.device):
        super().__init__(step)
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: Dict[Key, Tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.warm = False
        self.failed = False

    @staticmethod
    def usable(model) -> bool:
        """Every weight the step reads already on the compute device (a capture cannot copy from
        the CPU, as a host that offloads layer by layer would)."""
        device = model.device
        if device.type != "cuda":
            return False
        parts = (model.image_encoder, model.image_decoder, model.mask_embed)
        return all(p.device == device for part in parts for p in part.parameters())

    def _on_stream(self, fn):
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            out = fn()
        current.wait_stream(self.stream)
        return out

    def _capture(self, buffers: Sequence[torch.Tensor]) -> Tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        graph = torch.cuda.CUDAGraph()

        def record():
            # (not torch.cuda.graph: it empties the allocator's cache before every capture, and a
            # video captures one graph per set step)
            graph.capture_begin(pool=self.pool, capture_error_mode="thread_local")
            try:
                out = self.step(*buffers)
            finally:
                graph.capture_end()
            return out

        return graph, self._on_stream(record)

    def run(self, key: Key, buffers: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.failed:
            return self.step(*buffers)
        if not self.warm:
            self.warm = True
            return self._on_stream(lambda: self.step(*buffers)).clone()
        entry = self.graphs.get(key)
        if entry is None:
            try:
                entry = self.graphs[key] = self._capture(buffers)
            except RuntimeError as exc:
                log.warning("NOVA: CUDA graph capture of a set step failed (%s); this run continues eagerly.", exc)
                self.failed, self.graphs = True, {}
                torch.cuda.synchronize(self.device)
                return self.step(*buffers)
        graph, out = entry
        graph.replay()
        return out.clone()


def encode_step(model, fast, guidance, x, unknown, context, known_ids, pred_ids):
    """The spatial half of one set step: the diffusion head's condition for the ``pred_ids`` tokens,
    [P*B, n, D] (what the diffusion loop then denoises, see :meth:`nova.sampling.fast.FastPlan.denoise`).

    ``x`` [B, C, h, w] float32 the latent so far, ``unknown`` [B, L, 1] the tokens not yet sampled
    (this step's included), ``context`` [P*B, Lc, D] the frame's spatial context, ``known_ids``
    [P*B, K, 1] and ``pred_ids`` [B, n, 1] the known and the predicted tokens."""
    tokens = guidance.expand(model.image_tokens(x, unknown))
    pass_ids = pred_ids.repeat(guidance.passes, 1, 1)
    if fast.prune_last_block:
        z_pred = fast.encode_image(model, tokens, context, known_ids, out_ids=pass_ids)
    else:
        z = fast.encode_image(model, tokens, context, known_ids)
        z_pred = z.gather(1, pass_ids.expand(-1, -1, z.shape[-1]))
    return model.head_condition(z_pred)


def scatter_tokens(x: torch.Tensor, ids: torch.Tensor, sample: torch.Tensor, cfg) -> torch.Tensor:
    """``x`` [B, C, h, w] with the ``ids`` [B, n, 1] tokens replaced by ``sample`` [B, n, ppC]."""
    p = cfg.patch_size
    full = patchify(x, p).scatter(1, ids.expand(-1, -1, sample.shape[-1]), sample)
    return unpatchify(full, p, cfg.image_dim, cfg.image_base_size)


def pick_noise(full: Sequence[torch.Tensor], ids: torch.Tensor, patch: int, device: torch.device) -> torch.Tensor:
    """The values of the ``ids`` [B, n, 1] tokens (on the draws' device) of each full-latent draw,
    stacked as [len(full), B, n, ppC] on ``device``. Picked where they were drawn (the CPU
    generator's side: the copy shrinks from the full latent to n tokens), then sent in one copy
    that does not wait for the GPU."""
    idx = ids.expand(-1, -1, full[0].shape[1] * patch * patch)
    stacked = torch.stack([patchify(d, patch).gather(1, idx) for d in full])
    if stacked.device.type == "cpu" and device.type == "cuda":
        return stacked.pin_memory().to(device, non_blocking=True)
    return stacked.to(device)


def make_runner(model, step: Callable[..., torch.Tensor]) -> Optional[StepBuffers]:
    """The set-step runner for this model: CUDA graphs where they can be captured, the eager twin
    on the CPU and MPS, None on CUDA when weights are not all on the GPU (the caller then keeps the
    per-step path, whose diffusion loop still has its own graph)."""
    if model.device.type == "cuda":
        return GraphedSteps(step, model.device) if GraphedSteps.usable(model) else None
    return StepBuffers(step)
