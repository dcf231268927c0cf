"""``nova generate`` for URSA checkpoints (the family is read from ``model_index.json``).

The NOVA-only options (--window, --blend, --loop, --mask, --diffusion-steps, speed modes) are refused;
URSA adds --width/--height, --motion (the official ``motion=<value>, `` prompt prefix),
--guidance-trunc, --num-cond-frames and --cond-noise-scale. With --video the output is the given clip
followed by the new frames (the official extension recipe), so repeated calls make long videos.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ..errors import InputError

# Defaults of the official examples (README of baaivision/URSA).
VIDEO_SIZE, IMAGE_SIZE = (320, 512), (1024, 1024)
MOTION, EXTENSION_MOTION, EXTENSION_NOISE = 9.0, 5.0, 0.1


def refuse_nova_options(args) -> None:
    nova_only = {
        "--window": args.window,
        "--blend": args.blend,
        "--loop": args.loop,
        "--mask": args.mask,
        "--reference": args.reference,
    }
    given = [name for name, value in nova_only.items() if value]
    if given:
        raise InputError(f"{', '.join(given)}: NOVA options; URSA checkpoints extend videos with --video instead.")
    if len(args.prompt) > 1:
        raise InputError("several --prompt: URSA makes one clip per call; extend it with --video and a new --prompt.")


def generate_ursa(args, folder: str, device, image, clip) -> int:
    import torch

    from ..devices import auto_dtype
    from ..dtypes import torch_dtype
    from ..io.media import VideoWriter, check_output
    from ..sampling.rng import check_seed
    from .config import load_vae_config
    from .pipeline import UrsaPipeline

    refuse_nova_options(args)
    check_seed(args.seed)
    video_model = load_vae_config(f"{folder}/vae").video
    height, width = VIDEO_SIZE if video_model else IMAGE_SIZE
    height, width = args.height or height, args.width or width
    frames = args.frames or (49 if video_model else 1)
    if clip is not None and not video_model:
        raise InputError("--video needs a video checkpoint (URSA-*-FSQ320).")
    from ..io.images import fit_image

    image = None if image is None else fit_image(image, height, width)
    clip = None if clip is None else np.stack([fit_image(f, height, width, name="--video") for f in clip])
    cond_frames = args.num_cond_frames
    total = frames + (len(clip) - cond_frames if clip is not None else 0)
    check_output(args.out, frames=total, fps=args.fps)
    motion = args.motion if args.motion is not None else (EXTENSION_MOTION if clip is not None else MOTION)
    prompt = args.prompt[0]
    if video_model and frames > 1 and motion > 0 and not prompt.lstrip().startswith("motion="):
        prompt = f"motion={float(motion)}, {prompt}"
    noise = args.cond_noise_scale
    if noise is None:
        noise = EXTENSION_NOISE if clip is not None else 0.0

    dtype = auto_dtype(device) if args.dtype == "auto" else torch_dtype(args.dtype)
    t0 = time.time()
    pipe = UrsaPipeline.from_pretrained(folder, torch_dtype=dtype, device=device)
    print(
        f"loaded {args.model} ({str(dtype).replace('torch.', '')} on {device}) in {time.time() - t0:.1f}s",
        file=sys.stderr,
    )
    t0 = time.time()
    out = pipe(
        prompt=prompt,
        negative_prompt=args.negative_prompt,
        height=height,
        width=width,
        num_frames=frames,
        num_inference_steps=args.steps or 25,
        guidance_scale=7.0 if args.cfg is None else args.cfg,
        guidance_trunc=args.guidance_trunc,
        image=image,
        video=clip,
        num_cond_frames=cond_frames if clip is not None else None,
        cond_noise_scale=noise,
        generator=torch.Generator(device=device).manual_seed(args.seed),
        output_type="np",
        callback_on_step_end=lambda step, steps, ids: print(f"\rstep {step + 1}/{steps}", end="", file=sys.stderr),
    )
    print("", file=sys.stderr)
    result = out.frames[0] if out.frames.ndim == 5 else out.frames  # [F, H, W, 3]
    if clip is not None:
        result = np.concatenate([clip, result[cond_frames:]])
    with VideoWriter(args.out, args.fps) as writer:
        writer.write(result)
    print(f"wrote {args.out} ({len(result)} frame(s), {time.time() - t0:.1f}s)", file=sys.stderr)
    return 0
