"""Phi-2 (random weights, real size) encoding one 256-token prompt: bf16 weights against fp8
weight storage (nova.speed.fp8). python bench/text_encoder_memory.py"""

import json
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from presets import PHI2, PROMPT  # noqa: E402

from nova.components.text_encoder import TextEncoder, load_tokenizer  # noqa: E402
from nova.components.tiny import write_tokenizer  # noqa: E402
from nova.speed.fp8 import store_linear_weights_fp8  # noqa: E402


def main():
    from transformers import PhiConfig, PhiModel

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tok_dir = tempfile.mkdtemp()
    write_tokenizer(tok_dir)
    tokenizer = load_tokenizer(tok_dir)
    rows, ref = [], None
    for mode in ("bf16", "fp8_e4m3fn"):
        torch.manual_seed(0)
        with torch.device(device):
            model = PhiModel(PhiConfig(**PHI2)).to(torch.bfloat16).eval().requires_grad_(False)
        if mode == "fp8_e4m3fn":
            store_linear_weights_fp8(model)
        weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        enc = TextEncoder(model, tokenizer)
        with torch.inference_mode():
            enc.encode([PROMPT], 256)
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            out = enc.encode([PROMPT], 256)
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        feats = out.features[0, : out.lengths[0]].float()
        row = {
            "weights": mode,
            "weight_gb": round(weights / 2**30, 2),
            "seconds": round(dt, 4),
            "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
        }
        if ref is None:
            ref = feats
        else:
            row["cosine_vs_bf16_min"] = round(float(torch.nn.functional.cosine_similarity(feats, ref, dim=-1).min()), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
        del model, enc
        if device.type == "cuda":
            torch.cuda.empty_cache()
    out_dir = os.environ.get("OUT", os.path.join(ROOT, "bench", "results"))
    with open(os.path.join(out_dir, "text-encoder-fp8.json"), "w", encoding="utf-8") as f:
        json.dump(
            {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "rows": rows}, f, indent=2
        )


if __name__ == "__main__":
    main()
