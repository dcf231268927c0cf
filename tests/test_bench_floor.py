"""bench/floor.py records the matmul and attention calls of a run (the kernel floor of the report)."""

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
from floor import kernel_floor  # noqa: E402


def test_floor_records_every_kernel_call_with_its_layout():
    torch.manual_seed(0)
    lin = torch.nn.Linear(32, 96)
    x = torch.randn(2, 10, 32)

    def run():
        for _ in range(3):  # three identical calls: one distinct layout
            q, k, v = lin(x).view(2, 10, 3, 4, 8).permute(2, 0, 3, 1, 4).unbind(0)
            F.scaled_dot_product_attention(q, k, v)
        torch.mm(x[0], x[1].t())  # another op, another layout
        mask = torch.ones(10, 10, dtype=torch.bool).tril()
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # a boolean input is rebuilt too
        F.gelu(x)  # elementwise: not a kernel of the floor

    with torch.inference_mode():
        floor = kernel_floor(run, torch.device("cpu"))
    assert floor["calls"] == 8
    assert floor["distinct_calls"] == 4
    assert set(floor["by_op"]) == {"linear", "scaled_dot_product_attention", "mm"}
    assert floor["seconds"] > 0
    assert abs(sum(floor["by_op"].values()) - floor["seconds"]) < 1e-3
