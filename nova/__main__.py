"""Command line: ``nova generate ...`` (or ``python -m nova generate ...``) and ``nova make-tiny DIR``.

Everything that can be checked is checked before the model loads: the output file (extension,
writable, a PNG gets one frame), fps, the seed, the device, the sampler settings, the window,
blend and loop, and --image/--video are read. An error prints one line and exits with status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _checked_inputs(args):
    """The checks that need no checkpoint, and the input frames. Returns (device, image, clip)."""
    from .errors import InputError
    from .media import check_fps, check_output, read_frames
    from .pipeline import check_device, default_device
    from .sampling import SamplerSettings, check_seed

    check_output(args.out)
    check_fps(args.fps)
    check_seed(args.seed)
    device = check_device(args.device) if args.device else default_device()
    SamplerSettings(args.steps, args.diffusion_steps, args.cfg)
    if args.motion_flow < 0 or args.motion_flow != args.motion_flow:
        raise InputError(f"--motion-flow = {args.motion_flow}; expected a number >= 0 (official default 5).")
    for name, value, low in (("--window", args.window, 0), ("--blend", args.blend, 0), ("--loop", args.loop, 0)):
        if value < low:
            raise InputError(f"{name} = {value}; expected an integer >= {low}.")
    if args.window == 1:
        raise InputError("--window = 1; use at least 2 latent frames (or 0 for the whole video).")
    if args.image and args.video:
        raise InputError("pass either --image (a first frame) or --video (a clip to continue), not both.")
    if args.mask and (bool(args.image) == bool(args.video) or len(args.prompt) != 1):
        raise InputError("--mask repaints one --image or one --video (not both) under one --prompt.")
    if args.mask and (args.window or args.blend or args.loop):
        raise InputError(f"--mask with --window {args.window} / --blend {args.blend} / --loop {args.loop}: a masked "
                         "generation is one segment over all frames; leave --window, --blend and --loop at 0.")
    if args.denoise is not None:
        from .sampling import check_denoise

        check_denoise(args.denoise, "--denoise")
        if not (args.image or args.video):
            raise InputError(f"--denoise {args.denoise} re-samples given frames: pass --image or --video "
                             "(or drop --denoise).")
    if not 0 <= args.mask_threshold < 1:
        raise InputError(f"--mask-threshold = {args.mask_threshold}; expected a value in [0, 1).")
    for name, value in (("--mask-grow", args.mask_grow), ("--feather", args.feather)):
        if value < 0:
            raise InputError(f"{name} = {value}; expected an integer >= 0.")
    if args.keyframe and args.mask:
        raise InputError("--keyframe with --mask: a masked generation repaints given frames; pin keyframes in a "
                         "generation without --mask.")
    args.keyframe_pairs = [_keyframe_arg(text) for text in args.keyframe or ()]
    image = read_frames(args.image, "--image")[0] if args.image else None
    clip = read_frames(args.video, "--video") if args.video else None
    mask = None
    if args.mask:
        from .masks import mask_from_rgb

        mask = mask_from_rgb(read_frames(args.mask, "--mask"), args.mask)
    return device, image, clip, mask


def _keyframe_arg(text: str):
    """--keyframe IMAGE@FRAME -> (picture, frame); the frame is checked against the video later."""
    from .errors import InputError
    from .media import read_frames

    path, sep, frame = text.rpartition("@")
    try:
        index = int(frame)
    except ValueError:
        index = None
    if not sep or not path or index is None:
        raise InputError(f"--keyframe {text!r}; expected IMAGE@FRAME, e.g. end.png@32 or end.png@-1 (the last frame).")
    return read_frames(path, "--keyframe")[0], index


def _checked_checkpoint(args, clip=None):
    """The checkpoint folder and its transformer config (read without loading any weights), and
    the latent frames to make; the frame counts are checked against the output here."""
    from .config import load_config
    from .errors import InputError
    from .loading import resolve_checkpoint
    from .media import check_output
    from .vae_frames import frames_for_latents, frames_kept, latents_for_frames

    folder = resolve_checkpoint(args.model)
    config = load_config(os.path.join(folder, "transformer", "config.json"))
    video = config.is_video_model
    long_video = len(args.prompt) > 1 or args.window or args.loop or args.video
    if not video and long_video:
        raise InputError("--window/--loop/--video and several --prompt need a video checkpoint"
                         f" ({folder} is an image checkpoint); with --mask, repaint an --image instead.")
    if args.mask or (args.denoise is not None and clip is not None):
        # the given frames are repainted or re-sampled, then continued up to --frames (default: no more)
        given = 1 if clip is None else latents_for_frames(frames_kept(len(clip)))
        latents = given if not args.frames else (latents_for_frames(args.frames) if video else 1)
        if latents < given:
            raise InputError(f"--frames {args.frames} is shorter than the {given} latent frames of the given clip.")
        long_video = long_video and not args.mask  # (a mask has its own path, _generate_masked)
    else:
        latents = latents_for_frames(args.frames or 33) if video else 1
    check_output(args.out, frames=frames_for_latents(latents + args.loop))
    if args.keyframe_pairs:
        from .keyframes import latent_index

        if not video:
            raise InputError(f"--keyframe pins pictures at times of a video; {folder} is an image checkpoint.")
        for _, frame in args.keyframe_pairs:  # (reachable and inside the video: checked before the model loads)
            latent_index(frame, latents)
        if not 0 <= args.keyframe_approach <= 64:
            raise InputError(f"--keyframe-approach = {args.keyframe_approach}; expected an integer in [0, 64].")
        if not 0 <= args.keyframe_strength <= 1:
            raise InputError(f"--keyframe-strength = {args.keyframe_strength}; expected a number in [0, 1].")
    return folder, config, latents, bool(long_video)


def _checked_speed_mode(args, device, dtype, config):
    """The speed mode of --reference, --attention, --fp8-matmuls and --compile, checked against the
    device, the dtype and the checkpoint's head size before the weights load."""
    from .fast import Accel
    from .spatial_kernels import check_runnable

    accel = Accel.choose(args.reference, args.attention, args.fp8_matmuls, args.compile_encoder)
    check_runnable(accel.attention, accel.fp8_matmuls, accel.compile_encoder, device, dtype, config)
    return accel


def _generate(args) -> int:
    device, image, clip, mask = _checked_inputs(args)
    folder, config, latents, long_video = _checked_checkpoint(args, clip)

    import torch

    from .pipeline import NovaPipeline, auto_dtype

    dtype = auto_dtype(device) if args.dtype == "auto" else getattr(torch, DTYPES[args.dtype])
    accel = _checked_speed_mode(args, device, dtype, config)
    t0 = time.time()
    pipe = NovaPipeline.from_pretrained(folder, torch_dtype=dtype, device=device, vae_dtype=torch.float32)
    pipe.accel = accel
    if args.mask:
        return _generate_masked(pipe, args, image, clip, mask, latents, t0)
    path = " on the reference path" if args.reference else ""
    path += "" if accel.describe() == "default kernels" else f", spatial encoder with {accel.describe()}"
    name = str(dtype).replace("torch.", "")
    print(f"loaded {args.model} ({name} on {device}) in {time.time() - t0:.1f}s; generating {latents} latent frame(s){path}", file=sys.stderr)
    t0 = time.time()
    generator = torch.Generator().manual_seed(args.seed)
    if not long_video:
        out = pipe(
            prompt=args.prompt[0], negative_prompt=args.negative_prompt, image=image, max_latent_length=latents,
            num_inference_steps=args.steps, num_diffusion_steps=args.diffusion_steps, guidance_scale=args.cfg,
            motion_flow=args.motion_flow, fps=args.fps, generator=generator, output_type="latent",
            strength=args.denoise, keyframes=args.keyframe_pairs or None, keyframe_approach=args.keyframe_approach,
            keyframe_strength=args.keyframe_strength,
        )
        result = out.frames if config.is_video_model else out.images
    else:
        result = _long_video(pipe, args, latents, image, clip, generator)
    pipe.save(result, args.out, fps=args.fps)
    print(f"wrote {args.out} ({time.time() - t0:.1f}s)", file=sys.stderr)
    return 0


def _long_video(pipe, args, latents, image, clip, generator):
    """Several prompts, a window, a loop or a clip to continue: one plan over segments."""
    from .errors import InputError
    from .pipeline import progress_bar
    from .plan import GenerationPlan
    from .sampling import SamplerSettings

    settings = SamplerSettings(args.steps, args.diffusion_steps, args.cfg)
    prompts = args.prompt
    prefix = pipe.encode_video(clip) if clip is not None else None
    if image is not None:
        prefix = pipe.encode_image(image, generator).unsqueeze(2)
    new = latents - (0 if prefix is None else prefix.shape[2])
    if new < len(prompts) and args.denoise is None:  # (re-sampled given frames are under the first prompt)
        raise InputError(f"{len(prompts)} prompts need at least {len(prompts)} new latent frames; raise --frames.")
    sizes = [new // len(prompts) + (1 if i < new % len(prompts) else 0) for i in range(len(prompts))]
    guided = settings.guidance_scale > 1
    segments = [pipe.segment(p, n, args.negative_prompt or "", args.motion_flow, args.fps, guided) for p, n in zip(prompts, sizes)]
    keyframes = pipe.keyframes(args.keyframe_pairs, latents, args.keyframe_approach, args.keyframe_strength)
    plan = GenerationPlan(pipe.transformer, pipe.scheduler, settings, segments, prefix=prefix, window=args.window or None,
                          blend_frames=args.blend, loop_frames=args.loop, accel=pipe.accel, denoise=args.denoise,
                          keyframes=keyframes)
    with progress_bar(plan.ticks) as bar:
        return plan.run(generator, bar)


def _generate_masked(pipe, args, image, clip, mask, latents, t0) -> int:
    """--mask: repaint --image or --video under the mask (nova/masks.py), then continue up to --frames."""
    import torch

    from .masks import masked_prefix
    from .pipeline import progress_bar
    from .plan import GenerationPlan
    from .sampling import SamplerSettings

    source = {"video": clip} if clip is not None else {"image": image}
    prefix, regen, blend = masked_prefix(pipe, mask, threshold=args.mask_threshold, grow=args.mask_grow, feather=args.feather, **source)
    settings = SamplerSettings(args.steps, args.diffusion_steps, args.cfg)
    segment = pipe.segment(args.prompt[0], latents - prefix.shape[2], args.negative_prompt or "", args.motion_flow, args.fps,
                           settings.guidance_scale > 1)
    plan = GenerationPlan(pipe.transformer, pipe.scheduler, settings, [segment], prefix=prefix, accel=pipe.accel,
                          prefix_mask=regen, denoise=args.denoise)
    print(f"repainting {int(regen.any(dim=1).sum())} of {prefix.shape[2]} latent frame(s) under {args.mask}", file=sys.stderr)
    with progress_bar(plan.ticks) as bar:
        result = plan.run(torch.Generator().manual_seed(args.seed), bar)
    pipe.save(result, args.out, fps=args.fps, blend=blend)
    print(f"wrote {args.out} ({time.time() - t0:.1f}s)", file=sys.stderr)
    return 0


def _make_tiny(args) -> int:
    from .tiny import make_tiny

    make_tiny(args.dir, preset=args.preset, seed=args.seed)
    print(f"wrote a random '{args.preset}' checkpoint to {args.dir} (random weights: its videos are noise)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .speed_options import add_speed_arguments

    parser = argparse.ArgumentParser(prog="nova", description="NOVA video/image generation")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
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
    gen.add_argument("--denoise", type=float, default=None,
                     help="re-sample --image or --video (under --mask only, with one) at this strength in [0, 1]: "
                          "0 keeps them, 1 ignores them (image-to-image, video-to-video); default: keep and "
                          "continue them")
    gen.add_argument("--keyframe", action="append", default=None, metavar="IMAGE@FRAME",
                     help="pin a picture at a video frame (0 or a multiple of 4; -1 = the last frame); repeatable")
    gen.add_argument("--keyframe-approach", type=int, default=2,
                     help="latent frames before each keyframe that approach it (4 video frames each)")
    gen.add_argument("--keyframe-strength", type=float, default=0.5,
                     help="in [0, 1]: the frame just before a keyframe has strength x approach / (approach + 1) "
                          "of its tokens fixed to it")
    gen.add_argument("--steps", type=int, default=64, help="set-by-set (AR) steps per frame")
    gen.add_argument("--diffusion-steps", type=int, default=25)
    gen.add_argument("--cfg", type=float, default=5.0)
    gen.add_argument("--motion-flow", type=float, default=5.0)
    gen.add_argument("--fps", type=float, default=12.0)
    gen.add_argument("--seed", type=int, default=0,
                     help="0 .. 2**64-1; drawn on the CPU generator as the official code does, where only the low 32 bits matter")
    gen.add_argument("--dtype", choices=["auto"] + sorted(DTYPES), default="auto",
                     help="auto = bf16 where the device supports it (CUDA), else fp32")
    gen.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps (default: best available)")
    gen.add_argument("--reference", action="store_true", help="the official algorithm step for step (slower; the fast path matches it within rounding)")
    add_speed_arguments(gen)
    gen.add_argument("--out", required=True, help="output file: .mp4, .webp, .gif or .png")
    gen.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error")
    gen.set_defaults(func=_generate)
    tiny = sub.add_parser("make-tiny", help="write a small random checkpoint in the official layout")
    tiny.add_argument("dir")
    tiny.add_argument("--preset", choices=["video", "image", "mid"], default="video")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_make_tiny)
    from .batch import add_parser as add_batch_parser  # `batch`: nova/batch.py

    add_batch_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from .errors import NovaError

    try:
        return args.func(args)
    except (NovaError, OSError) as exc:
        if args.debug:
            raise
        what = "" if isinstance(exc, NovaError) else f"{type(exc).__name__}: "
        print(f"error: {what}{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
