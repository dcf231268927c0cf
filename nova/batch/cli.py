"""``python -m nova batch``: its arguments and its entry point. Torch-free, so that the CLI's parser
builds without importing torch; the runner is nova/batch/runner.py."""

from __future__ import annotations

import os
import sys

from ..dtypes import DTYPE_NAMES
from .items import FAMILY_DEFAULTS, OPTIONS, PATH_KEYS
from .layouts import LAYOUTS


def add_parser(sub) -> None:
    """The ``batch`` subcommand of ``python -m nova``."""
    from ..speed.options import add_speed_arguments

    p = sub.add_parser(
        "batch",
        help="prompts x samples into a folder: resumable, one process or many (torchrun)",
        description=(
            "Generate every prompt of a file --samples times into --out: resumable, in one "
            "process or many under torchrun / accelerate launch. The generation options below "
            "are the defaults of every prompt; a JSONL line may set its own (its paths are relative "
            "to the prompt file)."
        ),
    )
    p.add_argument("--model", required=True, help="checkpoint folder or Hugging Face repo id")
    p.add_argument("--prompts", required=True, help="text file (one prompt a line) or .jsonl (one object a line)")
    p.add_argument("--out", required=True, help="output folder (shared by all processes); holds manifest.jsonl")
    p.add_argument("--samples", type=int, default=1, help="samples per prompt")
    p.add_argument(
        "--batch-size", type=int, default=1, help="samples per forward pass (same videos, more throughput on GPUs)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="run seed; each sample's seed derives from it, the item and the sample"
    )
    p.add_argument("--layout", choices=LAYOUTS, default="default", help="file names: default, vbench, geneval")
    for option in OPTIONS:
        if option.key in FAMILY_DEFAULTS["nova"]:  # unset: the checkpoint family's default
            nova, ursa = FAMILY_DEFAULTS["nova"][option.key], FAMILY_DEFAULTS["ursa"][option.key]
            p.add_argument(
                option.flag,
                type=option.type,
                default=None,
                help=f"{option.help} (default {nova:g} for NOVA, {ursa:g} for URSA checkpoints)",
            )
        else:
            p.add_argument(option.flag, type=option.type, default=option.default, help=option.help)
    p.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="fp32", help="compute dtype of the transformer")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available; GPU of the local rank)")
    p.add_argument("--reference", action="store_true", help="the official algorithm step for step (slower)")
    add_speed_arguments(p)
    p.set_defaults(func=main)


def job_from_args(args):
    """The BatchJob that the parsed arguments describe."""
    from .runner import BatchJob

    options = {o.key: getattr(args, o.key) for o in OPTIONS}
    for key in PATH_KEYS:
        if options[key]:
            options[key] = os.path.abspath(options[key])
    if options["keyframe"]:  # IMAGE@FRAME;...: each path made absolute ("@FRAME" stays at the end of the name)
        options["keyframe"] = ";".join(os.path.abspath(p.strip()) for p in options["keyframe"].split(";") if p.strip())
    return BatchJob(
        args.model,
        args.prompts,
        args.out,
        args.samples,
        args.batch_size,
        args.seed,
        args.layout,
        args.dtype,
        args.device,
        args.reference,
        options,
        args.attention,
        args.fp8_matmuls,
        args.compile_encoder,
    )


def main(args) -> int:
    from .runner import run

    summary = run(job_from_args(args))
    if os.environ.get("RANK", "0") == "0":
        print(f"{summary.done} of {summary.total} outputs in {args.out}", file=sys.stderr)
        for (item, sample), error in sorted(summary.failed.items()):
            print(f"failed: item {item} sample {sample}: {error}", file=sys.stderr)
        if summary.missing:
            print(
                f"{summary.missing} outputs missing (a process stopped early); rerun the same command", file=sys.stderr
            )
    return summary.exit_code
