"""``python -m nova batch``: prompts x samples at evaluation scale, in one process or many.

    python -m nova batch --model M --prompts prompts.txt --out DIR --samples 5 --batch-size 4
    torchrun --nproc_per_node 8 -m nova batch --model M --prompts prompts.txt --out DIR ...

Under torchrun / ``accelerate launch`` every process takes its local rank's device and every
``world_size``-th batch of the run's plan (:mod:`nova.batch_items`); without a launcher one
process does all of them. The steps:

1. Rank 0 encodes every prompt with Phi-2 into ``DIR/prompt_embeds.safetensors`` and frees the
   text encoder; no process holds Phi-2 while sampling.
2. Each process samples its batches (each sample with its own generator, seeded from the run
   seed, item and sample: the same video whatever the batch or the number of processes), decodes
   each output to a temporary file, renames it into place, then appends its line to
   ``DIR/manifest.jsonl`` (:mod:`nova.manifest`).
3. A unit that fails (unreadable image, bad option, ...) is recorded with its error; a batch that
   fails is retried unit by unit. The exit code is 1 when some units failed.

A rerun with the same arguments skips what the manifest records as done (a kill loses at most the
batches in flight); other arguments are refused with what differs. ``DIR`` must be on a file
system every process sees (one machine, or a shared mount across machines).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
import shutil
import time
import traceback
import uuid
from typing import Any, Dict, List, Optional, Sequence

import torch

from . import embed_cache, manifest
from .batch_items import OPTIONS, PATH_KEYS, Item, Unit, plan_batches, read_items, share
from .distributed import World
from .errors import InputError, NovaError
from .layouts import LAYOUTS, check_collisions, check_layout, output_path, side_files

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Temporary outputs, per rank; removed at every start. (Not VideoWriter's own temp file beside the
# target: a rank killed outright, as torchrun does, would leave it among the outputs for good.)
PARTIAL = ".partial"
log = logging.getLogger("nova.batch")


@dataclasses.dataclass
class BatchJob:
    """The arguments of a batch run (``python -m nova batch`` flags, as a library call)."""

    model: str
    prompts: str
    out: str
    samples: int = 1
    batch_size: int = 1
    seed: int = 0
    layout: str = "default"
    dtype: str = "fp32"
    device: Optional[str] = None
    reference: bool = False
    options: Dict[str, Any] = dataclasses.field(default_factory=lambda: {o.key: o.default for o in OPTIONS})
    attention: str = "auto"  # the spatial encoder's mode (nova/spatial_kernels.py)
    fp8_matmuls: bool = False
    compile_encoder: bool = False  # (same latents up to rounding: not part of the run's identity)

    def identity(self) -> dict:
        """What decides the outputs: a rerun in the same folder must repeat it (batch size and
        device may change: they do not change which video a unit gets)."""
        with open(self.prompts, "rb") as f:
            prompts_sha256 = hashlib.sha256(f.read()).hexdigest()
        model = os.path.abspath(self.model) if os.path.isdir(self.model) else self.model
        speed = {}  # (only when set: the identities of earlier runs stay as they were)
        if self.attention != "auto":
            speed["attention"] = self.attention
        if self.fp8_matmuls:
            speed["fp8_matmuls"] = True
        # (as speed: options added later appear only when set, so the identities of earlier runs stay as they were)
        unset = {"denoise": None, "keyframe": None, "keyframe_approach": 2, "keyframe_strength": 0.5}
        options = {k: v for k, v in self.options.items() if not (k in unset and v == unset[k])}
        return {"model": model, "prompts_sha256": prompts_sha256, "samples": self.samples, "seed": self.seed,
                "layout": self.layout, "dtype": self.dtype, "reference": self.reference, **options, **speed}


@dataclasses.dataclass(frozen=True)
class BatchSummary:
    total: int
    done: int
    failed: Dict[tuple, str]  # (item, sample) -> error
    missing: int  # neither done nor failed (a process died)

    @property
    def exit_code(self) -> int:
        return 0 if self.done == self.total else 1


def run(job: BatchJob) -> BatchSummary:
    """Run (or resume) a batch job in this process, as one rank of the launcher's process group."""
    if job.dtype not in DTYPES:
        raise InputError(f"dtype {job.dtype!r}; expected one of {', '.join(DTYPES)}.")
    from .fast import Accel

    Accel.choose(job.reference, job.attention, job.fp8_matmuls, job.compile_encoder)  # (a bad mode fails before any process starts)
    world, handlers = None, []
    try:  # whatever fails from here on (even the output folder), the process group is closed
        world = World.start(job.device)
        out = os.path.abspath(job.out)
        os.makedirs(os.path.join(out, "logs"), exist_ok=True)
        handlers = _rank_log(out, world.rank)
        return _run(job, world, out)
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()
        if world is not None:
            world.close()


def _run(job: BatchJob, world: World, out: str) -> BatchSummary:
    from .config import load_config
    from .loading import resolve_checkpoint
    from .spatial_kernels import check_runnable

    items = read_items(job.prompts, job.options)
    folder = resolve_checkpoint(job.model)
    config = load_config(os.path.join(folder, "transformer", "config.json"))
    check_runnable(job.attention, job.fp8_matmuls, job.compile_encoder, world.device, DTYPES[job.dtype], config)
    check_layout(job.layout, config.is_video_model)
    check_collisions(items, job.layout, config.is_video_model)
    batches = plan_batches(items, job.samples, job.batch_size, job.seed)
    manifest_path = os.path.join(out, manifest.NAME)
    identity = job.identity()
    manifest.check_same_args(manifest.read(manifest_path), identity, manifest_path)
    log.info("rank %d/%d on %s: %d items x %d samples, batch size %d", world.rank, world.size, world.device,
             len(items), job.samples, job.batch_size)

    if world.main:  # one process prepares the folder and encodes the prompts, the others wait
        _set_up_folder(out, folder, items, config, job, world, identity)
    pipe = _load_pipeline(folder, job, world.device)
    world.barrier()

    done = manifest.finished(manifest.read(manifest_path), out)
    mine = share(batches, done, world.rank, world.size)
    total = sum(len(b) for b in batches)
    todo = sum(len(b) for b in mine)
    log.info("%d of %d outputs already done; this process makes %d in %d batches", len(done), total, todo, len(mine))
    bar = None
    try:  # the progress thread stops however this ends
        if world.main:
            from .batch_progress import ProgressBar

            bar = ProgressBar(manifest_path, total, len(done), "videos" if config.is_video_model else "images").start()
        texts = {t for b in mine for u in b if u.item.error is None for t in _texts(u.item)}
        embeds = embed_cache.load(os.path.join(out, embed_cache.NAME), texts, config.text_token_len,
                                  config.text_token_dim, DTYPES[job.dtype])
        worker = _Worker(pipe, job, out, world, embeds, manifest_path)
        for batch in mine:
            worker.run(batch)
        world.barrier()  # every process finishes before any exits (a launcher stops the rest at the first exit)
    finally:
        if bar is not None:
            bar.close()
    if world.main:
        shutil.rmtree(os.path.join(out, PARTIAL), ignore_errors=True)
    summary = summarize(batches, manifest.read(manifest_path), out)
    log.info("finished: %d of %d done, %d failed, %d missing", summary.done, summary.total, len(summary.failed), summary.missing)
    return summary


def _set_up_folder(out: str, folder: str, items: Sequence[Item], config, job: BatchJob, world: World, identity: dict) -> None:
    """Rank 0, before anyone samples: clear what a killed run left half-done, encode the prompts,
    and record this start."""
    manifest_path = os.path.join(out, manifest.NAME)
    manifest.repair(manifest_path)
    shutil.rmtree(os.path.join(out, PARTIAL), ignore_errors=True)
    embed_cache.discard_partial(os.path.join(out, embed_cache.NAME))
    _encode_prompts(folder, items, out, config.text_token_len, DTYPES[job.dtype], world.device)
    manifest.append(manifest_path, {
        "kind": "run", "args": identity, "world_size": world.size, "batch_size": job.batch_size,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })


def summarize(batches: Sequence[List[Unit]], records: List[dict], out: str) -> BatchSummary:
    keys = [u.key for b in batches for u in b]
    done = manifest.finished(records, out)
    failed = {k: r["error"] for k, r in manifest.failed(records).items() if k not in done}
    return BatchSummary(len(keys), sum(k in done for k in keys), failed, sum(k not in done and k not in failed for k in keys))


def _texts(item: Item) -> List[str]:
    negative = item.options.get("negative_prompt") or ""
    return list(item.prompts) + [negative]


def _encode_prompts(folder: str, items: Sequence[Item], out: str, max_length: int, dtype, device) -> None:
    """Phi-2 over every prompt not yet cached, then released before any sampling starts."""
    path = os.path.join(out, embed_cache.NAME)
    texts = {t for item in items if item.error is None for t in _texts(item)}
    if not set(texts) - {""} - set(embed_cache.cached(path)):
        return
    from .text_encoder import TextEncoder

    t0 = time.time()
    encoder = TextEncoder.from_folders(os.path.join(folder, "text_encoder"), os.path.join(folder, "tokenizer"), device, dtype)
    count = embed_cache.encode_missing(path, texts, encoder, max_length)
    del encoder
    if device.type == "cuda":
        torch.cuda.empty_cache()
    log.info("encoded %d prompts in %.1fs (text encoder released)", count, time.time() - t0)


def _load_pipeline(folder: str, job: BatchJob, device):
    from .fast import Accel
    from .pipeline import NovaPipeline

    pipe = NovaPipeline.from_pretrained(folder, torch_dtype=DTYPES[job.dtype], device=device,
                                        vae_dtype=torch.float32, load_text_encoder=False)
    pipe.accel = Accel.choose(job.reference, job.attention, job.fp8_matmuls, job.compile_encoder)
    return pipe


def _rank_log(out: str, rank: int) -> List[logging.Handler]:
    """Everything to DIR/logs/rank-<rank>.log; the main lines to the terminal (rank 0), and
    warnings and failures from every rank."""
    file = logging.FileHandler(os.path.join(out, "logs", f"rank-{rank}.log"), encoding="utf-8")
    file.setFormatter(logging.Formatter("%(asctime)s rank " + str(rank) + " %(levelname)s %(message)s"))
    terminal = logging.StreamHandler()
    terminal.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    terminal.setFormatter(logging.Formatter(("" if rank == 0 else f"rank {rank}: ") + "%(message)s"))
    for handler in (file, terminal):
        log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    return [file, terminal]


@dataclasses.dataclass
class _Prepared:
    """A unit ready to sample: its generator (already used for the image posterior, if any),
    per-segment prompt features, the negative's (None: the learned null embedding), motion and fps,
    prefix latents [1, C, N, h, w] and segment lengths."""

    unit: Unit
    path: str
    generator: torch.Generator
    settings: Any
    positives: List[Any]  # nova.text_encoder.PromptEmbeds, one per segment
    negative: Optional[Any]
    motion_flow: float
    fps: float
    sizes: tuple
    prefix: Optional[torch.Tensor]
    truncated: bool  # a prompt was longer than the text encoder's window (cut, as the official code does)
    regen: Optional[torch.Tensor] = None  # with a mask: the prefix tokens to repaint, bool [N, L] (one per batch)
    blend: Any = None  # with a mask and feather: nova.masks.FeatherBlend for the decoded frames
    keyframes: Any = None  # nova.keyframes.Keyframe list (the same for every unit of a batch: a shared option)

    @property
    def signature(self) -> tuple:
        regen = None if self.regen is None else hashlib.sha256(self.regen.cpu().numpy().tobytes()).hexdigest()
        return self.sizes, None if self.prefix is None else tuple(self.prefix.shape), regen


class _Worker:
    """Samples, writes and records the batches of one process."""

    def __init__(self, pipe, job: BatchJob, out: str, world: World, embeds, manifest_path: str):
        self.pipe, self.job, self.out, self.world, self.embeds = pipe, job, out, world, embeds
        self.manifest_path = manifest_path
        self.video = pipe.config.is_video_model
        self.tmp = os.path.join(out, PARTIAL, f"rank-{world.rank}")
        os.makedirs(self.tmp, exist_ok=True)

    @torch.inference_mode()
    def run(self, units: Sequence[Unit]) -> None:
        prepared = []
        for unit in units:
            try:
                prepared.append(self._prepare(unit))
            except Exception as exc:  # this unit only: the others go on
                self._fail(unit, exc)
        groups: Dict[tuple, List[_Prepared]] = {}
        for p in prepared:  # units that turned out to differ (e.g. clips of other lengths) run apart
            groups.setdefault(p.signature, []).append(p)
        for group in groups.values():
            self._sample_and_write(group)

    def _sample_and_write(self, group: List[_Prepared]) -> None:
        t0 = time.time()
        try:
            latents = self._sample(group)
        except Exception as exc:
            if self.world.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(group) == 1:
                self._fail(group[0].unit, exc)
                return
            log.warning("a batch of %d failed (%s); retrying its units one by one", len(group), exc)
            for p in group:  # fresh generators: the failed attempt used them
                self.run([p.unit])
            return
        share_seconds = (time.time() - t0) / len(group)
        for i, p in enumerate(group):
            try:
                self._write(p, latents[i : i + 1], share_seconds)
            except Exception as exc:
                self._fail(p.unit, exc)
        log.debug("batch of %d (items %s): %.1fs", len(group), ", ".join(f"{p.unit.item.index}/{p.unit.sample}" for p in group),
                  time.time() - t0)

    def _prepare(self, unit: Unit) -> _Prepared:
        from .media import read_frames
        from .sampling import SamplerSettings, check_denoise, new_generator
        from .vae_frames import latents_for_frames

        item, o = unit.item, unit.item.options
        if item.error is not None:
            raise InputError(item.error)
        path = output_path(item, unit.sample, self.job.layout, self.video)
        settings = SamplerSettings(o["steps"], o["diffusion_steps"], o["cfg"])
        if not self.video and (len(item.prompts) > 1 or o["window"] or o["loop"] or o["blend"] or o["video"]):
            raise InputError("several prompts, window, blend, loop and video need a video checkpoint.")
        denoise = o["denoise"]
        if denoise is not None:
            check_denoise(denoise)
            if not (o["image"] or o["video"]):
                raise InputError(f"denoise = {denoise} re-samples given frames: set image or video (or drop denoise).")
        generator = new_generator(unit.seed)  # CPU, as `generate`: the manifest's seed reproduces the output there
        regen = blend = None
        if o["mask"]:
            prefix, regen, blend = self._masked_prefix(item)
            latents = latents_for_frames(o["frames"]) if self.video and o["frames"] else prefix.shape[2]
            if latents < prefix.shape[2]:
                raise InputError(f"frames {o['frames']} is shorter than the {prefix.shape[2]} latent frames of the given clip.")
        else:
            latents = latents_for_frames(o["frames"] or 33) if self.video else 1
            prefix = None
            if o["video"]:
                prefix = self.pipe.encode_video(read_frames(o["video"], "video"))
                if denoise is not None and not o["frames"]:  # video-to-video: as long as the clip by default
                    latents = prefix.shape[2]
            elif o["image"]:  # the posterior draw comes first from the unit's generator, as in the pipeline
                prefix = self.pipe.encode_image(read_frames(o["image"], "image")[0], generator).unsqueeze(2)
        new = latents - (0 if prefix is None else prefix.shape[2])
        if new < len(item.prompts) and regen is None and denoise is None:
            raise InputError(f"{len(item.prompts)} prompt(s) need at least {len(item.prompts)} new latent frames "
                             f"after the {latents - new} given; raise frames (now {o['frames']}).")
        n = len(item.prompts)
        sizes = tuple(new // n + (1 if i < new % n else 0) for i in range(n))
        keyframes = None
        if o["keyframe"]:
            from .batch_items import keyframe_pairs
            from .keyframes import latent_index

            pairs = keyframe_pairs(o["keyframe"])
            for _, frame in pairs:  # (every frame checked before any picture is read)
                latent_index(frame, latents)
            pictures = [(read_frames(path, "keyframe")[0], frame) for path, frame in pairs]
            keyframes = self.pipe.keyframes(pictures, latents, o["keyframe_approach"], o["keyframe_strength"])
        negative = o["negative_prompt"]
        neg = self.embeds[negative] if negative and settings.guidance_scale > 1 else None
        positives = [self.embeds[p] for p in item.prompts]
        truncated = any(self.embeds[p].truncated[0] for p in item.prompts)
        return _Prepared(unit, path, generator, settings, positives, neg, o["motion_flow"], o["fps"], sizes, prefix, truncated,
                         regen, blend, keyframes)

    def _masked_prefix(self, item: Item):
        """As ``generate --mask``: the image or clip (posterior mean) with the tokens to repaint."""
        from .masks import mask_from_rgb, masked_prefix
        from .media import read_frames

        o = item.options
        if bool(o["image"]) == bool(o["video"]) or len(item.prompts) > 1 or o["window"] or o["blend"] or o["loop"]:
            raise InputError("mask repaints one image or one video (not both) under one prompt, without window/blend/loop.")
        source = ({"video": read_frames(o["video"], "video")} if o["video"]
                  else {"image": read_frames(o["image"], "image")[0]})
        mask = mask_from_rgb(read_frames(o["mask"], "mask"), o["mask"])
        return masked_prefix(self.pipe, mask, threshold=o["mask_threshold"], grow=o["mask_grow"], feather=o["feather"], **source)

    def _sample(self, group: List[_Prepared]) -> torch.Tensor:
        from .plan import GenerationPlan, Segment
        from .text_encoder import PromptEmbeds

        o = group[0].unit.item.options
        negatives = [p.negative for p in group]
        if any(n is None for n in negatives) and not all(n is None for n in negatives):
            raise InputError("a batch mixes samples with and without a negative prompt; they need separate batches.")
        negative = None if negatives[0] is None else PromptEmbeds.cat(negatives)
        flows, fpss = [p.motion_flow for p in group], [p.fps for p in group]
        segments = [Segment(PromptEmbeds.cat([p.positives[k] for p in group]), size, negative, flows, fpss)
                    for k, size in enumerate(group[0].sizes)]
        prefix = None if group[0].prefix is None else torch.cat([p.prefix for p in group])
        plan = GenerationPlan(self.pipe.transformer, self.pipe.scheduler, group[0].settings, segments, prefix=prefix,
                              window=o["window"] or None, blend_frames=o["blend"], loop_frames=o["loop"], accel=self.pipe.accel,
                              prefix_mask=group[0].regen, denoise=o["denoise"], keyframes=group[0].keyframes)
        return plan.run([p.generator for p in group])

    def _write(self, p: _Prepared, latents: torch.Tensor, sample_seconds: float) -> None:
        t0 = time.time()
        unit, item = p.unit, p.unit.item
        for rel, text in side_files(item, self.job.layout).items():
            self._place_text(rel, text)
        ext = os.path.splitext(p.path)[1]
        tmp = os.path.join(self.tmp, f"{uuid.uuid4().hex}{ext}")
        try:
            self.pipe.save(latents, tmp, fps=item.options["fps"], blend=p.blend)
            digest, size = _sha256(tmp)
            final = os.path.join(self.out, p.path)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        manifest.append(self.manifest_path, {
            "kind": "done", "item": item.index, "sample": unit.sample, "seed": unit.seed, "prompt": item.prompt,
            "name": item.name, "settings": item.options, "prompt_truncated": p.truncated, "path": p.path, "sha256": digest, "bytes": size,
            "seconds": round(sample_seconds + time.time() - t0, 3), "rank": self.world.rank,
        })

    def _place_text(self, rel: str, text: str) -> None:
        final = os.path.join(self.out, rel)
        if os.path.exists(final):
            with open(final, encoding="utf-8") as f:
                if f.read() == text:
                    return
        tmp = os.path.join(self.tmp, uuid.uuid4().hex)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(tmp, final)

    def _fail(self, unit: Unit, exc: Exception) -> None:
        error = str(exc) if isinstance(exc, NovaError) else f"{type(exc).__name__}: {exc}"
        log.error("item %d sample %d failed: %s", unit.item.index, unit.sample, error)
        if not isinstance(exc, NovaError):
            log.error("%s", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        manifest.append(self.manifest_path, {
            "kind": "failed", "item": unit.item.index, "sample": unit.sample, "seed": unit.seed,
            "prompt": unit.item.prompt, "line": unit.item.line, "error": error, "rank": self.world.rank,
        })


def _sha256(path: str):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest(), os.path.getsize(path)


# -- command line ------------------------------------------------------------------------------
def add_parser(sub) -> None:
    """The ``batch`` subcommand of ``python -m nova``."""
    from .speed_options import add_speed_arguments

    p = sub.add_parser("batch", help="prompts x samples into a folder: resumable, one process or many (torchrun)",
                       description="Generate every prompt of a file --samples times into --out: resumable, in one "
                                   "process or many under torchrun / accelerate launch. The generation options below "
                                   "are the defaults of every prompt; a JSONL line may set its own.")
    p.add_argument("--model", required=True, help="checkpoint folder or Hugging Face repo id")
    p.add_argument("--prompts", required=True, help="text file (one prompt a line) or .jsonl (one object a line)")
    p.add_argument("--out", required=True, help="output folder (shared by all processes); holds manifest.jsonl")
    p.add_argument("--samples", type=int, default=1, help="samples per prompt")
    p.add_argument("--batch-size", type=int, default=1, help="samples per forward pass (same videos, more throughput on GPUs)")
    p.add_argument("--seed", type=int, default=0, help="run seed; each sample's seed derives from it, the item and the sample")
    p.add_argument("--layout", choices=LAYOUTS, default="default", help="file names: default, vbench, geneval")
    for option in OPTIONS:
        p.add_argument(option.flag, type=option.type, default=option.default, help=option.help)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available; GPU of the local rank)")
    p.add_argument("--reference", action="store_true", help="the official algorithm step for step (slower)")
    add_speed_arguments(p)
    p.set_defaults(func=main)


def job_from_args(args) -> BatchJob:
    options = {o.key: getattr(args, o.key) for o in OPTIONS}
    for key in PATH_KEYS:
        if options[key]:
            options[key] = os.path.abspath(options[key])
    if options["keyframe"]:  # IMAGE@FRAME;...: each path made absolute ("@FRAME" stays at the end of the name)
        options["keyframe"] = ";".join(os.path.abspath(p.strip()) for p in options["keyframe"].split(";") if p.strip())
    return BatchJob(args.model, args.prompts, args.out, args.samples, args.batch_size, args.seed, args.layout,
                    args.dtype, args.device, args.reference, options, args.attention, args.fp8_matmuls,
                    args.compile_encoder)


def main(args) -> int:
    import sys

    summary = run(job_from_args(args))
    if os.environ.get("RANK", "0") == "0":
        print(f"{summary.done} of {summary.total} outputs in {args.out}", file=sys.stderr)
        for (item, sample), error in sorted(summary.failed.items()):
            print(f"failed: item {item} sample {sample}: {error}", file=sys.stderr)
        if summary.missing:
            print(f"{summary.missing} outputs missing (a process stopped early); rerun the same command", file=sys.stderr)
    return summary.exit_code
