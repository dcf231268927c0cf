"""Peak memory of decoding 9 latents (33 x 480 x 768) with the Open-Sora-Plan VAE at random
weights, across dtype, decode tile and streaming chunk: python bench/vae_memory.py"""

import itertools
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from presets import OSP_VAE  # noqa: E402

from nova.models.vae_opensora import AutoencoderKLOpenSora  # noqa: E402


def main():
    device = torch.device("cuda")
    torch.manual_seed(0)
    with torch.device(device):
        vae = AutoencoderKLOpenSora(OSP_VAE).eval().requires_grad_(False)
    z = torch.randn(1, 4, 9, 60, 96, device=device)
    rows = []
    with torch.inference_mode():
        for dtype, tile, chunk in itertools.product((torch.bfloat16, torch.float32), (5, 3), (2, 1)):
            vae.to(dtype)
            vae.decoder.stream_frames = chunk
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            frames = sum(x.shape[2] for x in vae.decode_tiles(z.to(dtype), tile))
            torch.cuda.synchronize()
            row = {
                "dtype": str(dtype)[6:],
                "tile_latents": tile,
                "stream_frames": chunk,
                "frames": frames,
                "seconds": round(time.perf_counter() - t0, 3),
                "peak_gb_above_weights": round((torch.cuda.max_memory_allocated(device) - base) / 2**30, 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = os.environ.get("OUT", os.path.join(ROOT, "bench", "results"))
    with open(os.path.join(out, "vae-memory.json"), "w", encoding="utf-8") as f:
        json.dump({"device": torch.cuda.get_device_name(device), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
