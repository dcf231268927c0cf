"""Command line: ``python -m nova generate ...`` and ``python -m nova make-tiny DIR``."""

from __future__ import annotations

import argparse
import logging
import sys
import time

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _generate(args) -> int:
    import numpy as np
    import torch

    from .media import read_frames, write_video
    from .pipeline import NovaPipeline
    from .vae_frames import latents_for_frames

    dtype = getattr(torch, DTYPES[args.dtype])
    t0 = time.time()
    pipe = NovaPipeline.from_pretrained(args.model, torch_dtype=dtype, device=args.device, vae_dtype=torch.float32)
    video = pipe.config.is_video_model
    latents = latents_for_frames(args.frames) if video else 1
    image = read_frames(args.image)[0] if args.image else None
    print(f"loaded {args.model} in {time.time() - t0:.1f}s; generating {latents} latent frame(s)", file=sys.stderr)
    t0 = time.time()
    out = pipe(
        prompt=args.prompt, negative_prompt=args.negative_prompt, image=image, max_latent_length=latents,
        num_inference_steps=args.steps, num_diffusion_steps=args.diffusion_steps, guidance_scale=args.cfg,
        motion_flow=args.motion_flow, fps=args.fps, generator=torch.Generator().manual_seed(args.seed), output_type="np",
    )
    frames = out.frames[0] if video else np.asarray(out.images)[:1]
    write_video(frames, args.out, fps=args.fps)
    print(f"wrote {args.out} ({len(frames)} frame(s), {time.time() - t0:.1f}s)", file=sys.stderr)
    return 0


def _make_tiny(args) -> int:
    from .tiny import make_tiny

    make_tiny(args.dir, preset=args.preset, seed=args.seed)
    print(f"wrote a random '{args.preset}' checkpoint to {args.dir}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nova", description="NOVA video/image generation")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate a video (.mp4/.webp/.gif) or an image (.png)")
    gen.add_argument("--model", required=True, help="checkpoint folder or Hugging Face repo id")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--negative-prompt", default=None)
    gen.add_argument("--image", default=None, help="first frame for image-to-video (cropped/resized to fit)")
    gen.add_argument("--frames", type=int, default=33, help="video frames: 1 + 4k (33 = 9 latents)")
    gen.add_argument("--steps", type=int, default=64, help="set-by-set (AR) steps per frame")
    gen.add_argument("--diffusion-steps", type=int, default=25)
    gen.add_argument("--cfg", type=float, default=5.0)
    gen.add_argument("--motion-flow", type=float, default=5.0)
    gen.add_argument("--fps", type=float, default=12.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    gen.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    gen.add_argument("--out", required=True, help="output file: .mp4, .webp, .gif or .png")
    gen.set_defaults(func=_generate)
    tiny = sub.add_parser("make-tiny", help="write a small random checkpoint in the official layout")
    tiny.add_argument("dir")
    tiny.add_argument("--preset", choices=["video", "image", "mid"], default="video")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_make_tiny)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from .errors import NovaError

    try:
        return args.func(args)
    except NovaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
