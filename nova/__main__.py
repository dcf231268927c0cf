"""Command line: ``python -m nova generate ...`` and ``python -m nova make-tiny DIR``."""

from __future__ import annotations

import argparse
import logging
import sys
import time

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _generate(args) -> int:
    import torch

    from .media import read_frames
    from .pipeline import NovaPipeline
    from .sampling import SamplerSettings
    from .vae_frames import latents_for_frames
    from .video import generate_video

    dtype = getattr(torch, DTYPES[args.dtype])
    t0 = time.time()
    pipe = NovaPipeline.from_pretrained(args.model, torch_dtype=dtype, device=args.device, vae_dtype=torch.float32)
    if args.reference:
        from .fast import Accel

        pipe.accel = Accel.plain()
    video = pipe.config.is_video_model
    if args.mask:
        return _generate_masked(pipe, args, t0)
    args.frames = args.frames or 33
    latents = latents_for_frames(args.frames) if video else 1
    prompts = args.prompt
    long_video = len(prompts) > 1 or args.window or args.loop or args.video
    path = " on the reference path" if args.reference else ""
    print(f"loaded {args.model} in {time.time() - t0:.1f}s; generating {latents} latent frame(s){path}", file=sys.stderr)
    t0 = time.time()
    generator = torch.Generator().manual_seed(args.seed)
    if not long_video:
        image = read_frames(args.image)[0] if args.image else None
        out = pipe(
            prompt=prompts[0], negative_prompt=args.negative_prompt, image=image, max_latent_length=latents,
            num_inference_steps=args.steps, num_diffusion_steps=args.diffusion_steps, guidance_scale=args.cfg,
            motion_flow=args.motion_flow, fps=args.fps, generator=generator, output_type="latent",
        )
        result = out.frames if video else out.images
    else:
        if not video:
            from .errors import InputError

            raise InputError("--window/--loop/--video and several --prompt need a video checkpoint.")
        settings = SamplerSettings(args.steps, args.diffusion_steps, args.cfg)
        prefix = pipe.encode_video(read_frames(args.video)) if args.video else None
        if args.image and prefix is None:
            prefix = pipe.encode_image(read_frames(args.image)[0], generator).unsqueeze(2)
        new = latents - (0 if prefix is None else prefix.shape[2])
        if new < len(prompts):
            from .errors import InputError

            raise InputError(f"{len(prompts)} prompts need at least {len(prompts)} new latent frames; raise --frames.")
        sizes = [new // len(prompts) + (1 if i < new % len(prompts) else 0) for i in range(len(prompts))]
        segments = [pipe.segment(p, n, settings, args.negative_prompt or "", args.motion_flow, args.fps) for p, n in zip(prompts, sizes)]
        result = generate_video(pipe.transformer, pipe.scheduler, segments, 1, settings, generator, prefix=prefix,
                                window=args.window or None, blend_frames=args.blend, loop_frames=args.loop, accel=pipe.accel)
    pipe.save(result, args.out, fps=args.fps)
    print(f"wrote {args.out} ({time.time() - t0:.1f}s)", file=sys.stderr)
    return 0


def _generate_masked(pipe, args, t0) -> int:
    """--mask: repaint --image or --video under the mask (nova/masks.py), then continue up to --frames."""
    import torch

    from .errors import InputError
    from .masks import mask_from_rgb, masked_prefix
    from .media import read_frames
    from .sampling import SamplerSettings
    from .vae_frames import latents_for_frames
    from .video import generate_video

    if bool(args.image) == bool(args.video) or len(args.prompt) != 1:
        raise InputError("--mask repaints one --image or one --video (not both) under one --prompt.")
    source = {"video": read_frames(args.video)} if args.video else {"image": read_frames(args.image)[0]}
    mask = mask_from_rgb(read_frames(args.mask), args.mask)
    prefix, regen, blend = masked_prefix(pipe, mask, threshold=args.mask_threshold, grow=args.mask_grow, feather=args.feather, **source)
    n = prefix.shape[2]
    total = n if not args.frames else (latents_for_frames(args.frames) if pipe.config.is_video_model else 1)
    if total < n:
        raise InputError(f"--frames {args.frames} is shorter than the {n} latent frames of the given clip.")
    settings = SamplerSettings(args.steps, args.diffusion_steps, args.cfg)
    segment = pipe.segment(args.prompt[0], total - n, settings, args.negative_prompt or "", args.motion_flow, args.fps)
    print(f"repainting {int(regen.any(dim=1).sum())} of {n} latent frame(s) under {args.mask}", file=sys.stderr)
    result = generate_video(pipe.transformer, pipe.scheduler, [segment], 1, settings, torch.Generator().manual_seed(args.seed),
                            prefix=prefix, accel=pipe.accel, prefix_mask=regen)
    pipe.save(result, args.out, fps=args.fps, blend=blend)
    print(f"wrote {args.out} ({time.time() - t0:.1f}s)", file=sys.stderr)
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
    gen.add_argument("--prompt", required=True, action="append", help="repeat for a video with one segment per prompt")
    gen.add_argument("--negative-prompt", default=None)
    gen.add_argument("--image", default=None, help="first frame for image-to-video (cropped/resized to fit)")
    gen.add_argument("--frames", type=int, default=None, help="video frames in total: 1 + 4k (33 = 9 latents, 361 = 30 s); "
                     "default 33, with --mask the length of the given clip")
    gen.add_argument("--video", default=None, help="a clip to continue (1 + 4k frames are used)")
    gen.add_argument("--window", type=int, default=0, help="latent frames of temporal context (9 = training length; 0 = all)")
    gen.add_argument("--blend", type=int, default=0, help="frames over which a new prompt fades in")
    gen.add_argument("--loop", type=int, default=0, help="extra frames leading back to the first frame")
    gen.add_argument("--mask", default=None, help="inpaint/outpaint --image or --video: a mask image or video (white = regenerate; "
                     "1 frame, or 1 per video frame)")
    gen.add_argument("--mask-threshold", type=float, default=0.5, help="a token is regenerated if any of its mask pixels is above this")
    gen.add_argument("--mask-grow", type=int, default=0, help="widen the regenerated region by this many tokens (16 pixels each)")
    gen.add_argument("--feather", type=int, default=0, help="with --mask: blend into the source over this many pixels inside the mask edge")
    gen.add_argument("--steps", type=int, default=64, help="set-by-set (AR) steps per frame")
    gen.add_argument("--diffusion-steps", type=int, default=25)
    gen.add_argument("--cfg", type=float, default=5.0)
    gen.add_argument("--motion-flow", type=float, default=5.0)
    gen.add_argument("--fps", type=float, default=12.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    gen.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    gen.add_argument("--reference", action="store_true", help="the official algorithm step for step (slower; the fast path matches it within rounding)")
    gen.add_argument("--out", required=True, help="output file: .mp4, .webp, .gif or .png")
    gen.set_defaults(func=_generate)
    tiny = sub.add_parser("make-tiny", help="write a small random checkpoint in the official layout")
    tiny.add_argument("dir")
    tiny.add_argument("--preset", choices=["video", "image", "mid"], default="video")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_make_tiny)
    from .batch import add_parser as add_batch_parser  # `batch`: nova/batch.py

    add_batch_parser(sub)
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
