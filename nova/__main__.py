"""Command line: ``nova generate ...`` (or ``python -m nova generate ...``) and ``nova make-tiny DIR``.

Everything that can be checked is checked before the model loads: the output file (extension,
writable, a PNG gets one frame), the options (nova/checks.py, shared with ``nova batch``), the
seed, the device, the checkpoint's config, and --image/--video/--mask (headers first, then the
frames the generation uses) against it. An error prints one line and exits with status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from . import checks
from .dtypes import DTYPE_NAMES, torch_dtype


def _checked_request(args):
    """Everything knowable before any weights load: the output file, the request (nova/request.py:
    the same rules as ``nova batch``, the input files read), the seed, the device and the
    checkpoint's config. Returns (device, folder, config, request)."""
    from .components.config import load_config
    from .components.loading import resolve_checkpoint
    from .devices import check_device, default_device
    from .io.frames import frames_for_latents
    from .io.media import check_output
    from .request import read_request
    from .sampling.rng import check_seed

    check_output(args.out)
    checks.check_options(vars(args), prompts=len(args.prompt))  # (before the checkpoint is looked up)
    check_seed(args.seed)
    device = check_device(args.device) if args.device else default_device()
    folder = resolve_checkpoint(args.model)
    config = load_config(os.path.join(folder, "transformer", "config.json"))
    request = read_request(vars(args), args.prompt, config, checkpoint=folder)
    checks.warn_about_steps(args.steps, config)
    check_output(args.out, frames=frames_for_latents(request.latents + args.loop))
    return device, folder, config, request


def _checked_speed_mode(args, device, dtype, config):
    """The speed mode of --reference, --attention, --fp8-matmuls and --compile, checked against the
    device, the dtype and the checkpoint's head size before the weights load."""
    from .sampling.fast import Accel
    from .speed.spatial_kernels import check_runnable

    accel = Accel.choose(args.reference, args.attention, args.fp8_matmuls, args.compile_encoder)
    check_runnable(accel.attention, accel.fp8_matmuls, accel.compile_encoder, device, dtype, config)
    return accel


def _generate(args) -> int:
    from .components.loading import resolve_checkpoint
    from .ursa.config import URSA_PIPELINE, read_family

    if read_family(resolve_checkpoint(args.model)) == URSA_PIPELINE:  # URSA: its own defaults and options
        from .ursa.cli import generate_ursa

        device, image, clip = _checked_ursa_inputs(args)
        return generate_ursa(args, resolve_checkpoint(args.model), device, image, clip)
    _check_no_ursa_options(args)
    args.steps = 64 if args.steps is None else args.steps
    args.cfg = 5.0 if args.cfg is None else args.cfg
    device, folder, config, request = _checked_request(args)

    import torch

    from .devices import auto_dtype
    from .pipeline import NovaPipeline
    from .sampling.progress import StepProgressBar
    from .sampling.rng import new_generator
    from .sampling.sampler import SamplerSettings

    dtype = auto_dtype(device) if args.dtype == "auto" else torch_dtype(args.dtype)
    accel = _checked_speed_mode(args, device, dtype, config)
    t0 = time.time()
    pipe = NovaPipeline.from_pretrained(folder, torch_dtype=dtype, device=device, vae_dtype=torch.float32)
    pipe.accel = accel
    path = " on the reference path" if args.reference else ""
    path += "" if accel.describe() == "default kernels" else f", spatial encoder with {accel.describe()}"
    name = str(dtype).replace("torch.", "")
    print(
        f"loaded {args.model} ({name} on {device}) in {time.time() - t0:.1f}s; generating {request.latents} "
        f"latent frame(s){path}",
        file=sys.stderr,
    )
    t0 = time.time()
    generator = new_generator(args.seed)  # CPU, as the official code draws
    given = request.given_frames(pipe, generator)
    if given.mask is not None:
        print(
            f"repainting {int(given.mask.any(dim=1).sum())} of {given.frames} latent frame(s) under {args.mask}",
            file=sys.stderr,
        )
    settings = SamplerSettings(args.steps, args.diffusion_steps, args.cfg)
    guided = settings.guidance_scale > 1
    segments = [
        pipe.segment(prompt, frames, args.negative_prompt or "", args.motion_flow, args.fps, guided)
        for prompt, frames in zip(request.prompts, request.frames_per_prompt(given))
    ]
    plan = request.plan(pipe, settings, segments, given)
    with StepProgressBar(plan.ticks) as bar:
        result = plan.run(generator, bar)
    pipe.save(result, args.out, fps=args.fps, blend=given.blend)
    print(f"wrote {args.out} ({time.time() - t0:.1f}s)", file=sys.stderr)
    return 0


def _checked_ursa_inputs(args):
    """An URSA run's checks before its weights load: the output, fps, seed, device, and the
    --image / --video it conditions on. Returns (device, image, clip)."""
    from .devices import check_device, default_device
    from .errors import InputError
    from .io.media import check_fps, check_output, read_frames
    from .sampling.rng import check_seed

    check_output(args.out)
    check_fps(args.fps)
    check_seed(args.seed)
    if args.image and args.video:
        raise InputError("pass either --image (a first frame) or --video (a clip to extend), not both.")
    if args.mask:
        raise InputError("--mask repaints with NOVA checkpoints only; URSA has no masked generation here.")
    device = check_device(args.device) if args.device else default_device()
    image = read_frames(args.image, "--image")[0] if args.image else None
    clip = read_frames(args.video, "--video") if args.video else None
    return device, image, clip


def _check_no_ursa_options(args):
    from .errors import InputError

    given = [
        name
        for name, value in (
            ("--width", args.width),
            ("--height", args.height),
            ("--motion", args.motion),
            ("--num-cond-frames", args.num_cond_frames != 13),
            ("--cond-noise-scale", args.cond_noise_scale),
        )
        if value
    ]
    if given:
        raise InputError(f"{', '.join(given)}: URSA options; NOVA checkpoints have a fixed size and use --motion-flow.")


def _make_tiny(args) -> int:
    from .components.tiny import make_tiny

    make_tiny(args.dir, preset=args.preset, seed=args.seed)
    print(
        f"wrote a random '{args.preset}' checkpoint to {args.dir} (random weights: its videos are noise)",
        file=sys.stderr,
    )
    return 0


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default (not for required ones, flags, or no default)."""

    def _get_help_string(self, action):
        default = action.default
        unset = default is None or default is False or default == argparse.SUPPRESS
        if action.required or unset or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .speed.options import add_speed_arguments

    parser = _Parser(prog="nova", description="NOVA video/image generation")
    parser.add_argument("--version", action="version", version=f"nova {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    gen = sub.add_parser("generate", help="generate a video (.mp4/.webp/.gif) or an image (.png)")
    gen.add_argument("--model", required=True, help="checkpoint folder or Hugging Face repo id")
    gen.add_argument("--prompt", required=True, action="append", help="repeat for a video with one segment per prompt")
    gen.add_argument("--negative-prompt", default=None, help="what to steer away from (with --cfg > 1)")
    gen.add_argument("--image", default=None, help="first frame for image-to-video (cropped/resized to fit)")
    gen.add_argument(
        "--frames",
        type=int,
        default=None,
        help=(
            "video frames in total: 1 + 4k (33 = 9 latents, 361 = 30 s); "
            "default 33, with --mask the length of the given clip"
        ),
    )
    gen.add_argument("--video", default=None, help="a clip to continue (1 + 4k frames are used)")
    gen.add_argument(
        "--window", type=int, default=0, help="latent frames of temporal context (9 = training length; 0 = all)"
    )
    gen.add_argument("--blend", type=int, default=0, help="frames over which a new prompt fades in")
    gen.add_argument("--loop", type=int, default=0, help="extra frames leading back to the first frame")
    gen.add_argument(
        "--mask",
        default=None,
        help=(
            "inpaint/outpaint --image or --video: a mask image or video (white = regenerate; "
            "1 frame, or 1 per video frame)"
        ),
    )
    gen.add_argument(
        "--mask-threshold",
        type=float,
        default=0.5,
        help="a token is regenerated if any of its mask pixels is above this",
    )
    gen.add_argument(
        "--mask-grow", type=int, default=0, help="widen the regenerated region by this many tokens (16 pixels each)"
    )
    gen.add_argument(
        "--feather",
        type=int,
        default=0,
        help="with --mask: blend into the source over this many pixels inside the mask edge",
    )
    gen.add_argument(
        "--denoise",
        type=float,
        default=None,
        help=(
            "re-sample --image or --video (under --mask only, with one) at this strength in [0, 1]: "
            "0 keeps them, 1 ignores them (image-to-image, video-to-video); default: keep and "
            "continue them"
        ),
    )
    gen.add_argument(
        "--keyframe",
        action="append",
        default=None,
        metavar="IMAGE@FRAME",
        help="pin a picture at a video frame (0 or a multiple of 4; -1 = the last frame); repeatable",
    )
    gen.add_argument(
        "--keyframe-approach",
        type=int,
        default=2,
        help="latent frames before each keyframe that approach it (4 video frames each)",
    )
    gen.add_argument(
        "--keyframe-strength",
        type=float,
        default=0.5,
        help=(
            "in [0, 1]: the frame just before a keyframe has strength x approach / (approach + 1) "
            "of its tokens fixed to it"
        ),
    )
    gen.add_argument(
        "--steps", type=int, default=None, help="NOVA: set-by-set (AR) steps per frame (64); URSA: sampling steps (25)"
    )
    gen.add_argument("--diffusion-steps", type=int, default=25, help="NOVA: diffusion steps per set step")
    gen.add_argument("--cfg", type=float, default=None, help="guidance scale (NOVA 5, URSA 7)")
    ursa = gen.add_argument_group("URSA checkpoints")
    ursa.add_argument("--width", type=int, default=None, help="pixels, multiple of 8 (512 video, 1024 image)")
    ursa.add_argument("--height", type=int, default=None, help="pixels, multiple of 8 (320 video, 1024 image)")
    ursa.add_argument(
        "--motion", type=float, default=None, help="the 'motion=<value>, ' prompt prefix (9; 5 with --video; 0 = none)"
    )
    ursa.add_argument("--guidance-trunc", type=float, default=0.9, help="guidance applies while t < this")
    ursa.add_argument(
        "--num-cond-frames", type=int, default=13, help="with --video: how many of its last frames condition the clip"
    )
    ursa.add_argument(
        "--cond-noise-scale", type=float, default=None, help="noise on the condition tokens (0; 0.1 with --video)"
    )
    gen.add_argument("--motion-flow", type=float, default=5.0, help="NOVA: motion flow (more = more motion)")
    gen.add_argument("--fps", type=float, default=12.0, help="frames per second (conditioning and file), 1 .. 120")
    gen.add_argument(
        "--seed",
        type=int,
        default=0,
        help="0 .. 2**64-1; drawn on the CPU generator as the official code does, where only the low 32 bits matter",
    )
    gen.add_argument(
        "--dtype",
        choices=["auto"] + sorted(DTYPE_NAMES),
        default="auto",
        help="auto = bf16 where the device supports it (CUDA), else fp32",
    )
    gen.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps (default: best available)")
    gen.add_argument(
        "--reference",
        action="store_true",
        help="the official algorithm step for step (slower; the fast path matches it within rounding)",
    )
    add_speed_arguments(gen)
    gen.add_argument("--out", required=True, help="output file: .mp4, .webp, .gif or .png")
    gen.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error"
    )
    gen.set_defaults(func=_generate)
    tiny = sub.add_parser("make-tiny", help="write a small random checkpoint in the official layout")
    tiny.add_argument("dir", help="a new or empty folder")
    tiny.add_argument(
        "--preset", choices=["video", "image", "mid"], default="video", help="which checkpoint to imitate"
    )
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    tiny.set_defaults(func=_make_tiny)
    from .batch.cli import add_parser as add_batch_parser  # `batch`: nova/batch/cli.py, nova/batch/runner.py

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
