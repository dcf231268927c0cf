"""``python -m nova batch``: prompts x samples at evaluation scale, in one process or many.

    python -m nova batch --model M --prompts prompts.txt --out DIR --samples 5 --batch-size 4
    torchrun --nproc_per_node 8 -m nova batch --model M --prompts prompts.txt --out DIR ...

Under torchrun / ``accelerate launch`` every process takes its local rank's device and every
``world_size``-th batch of the run's plan (:mod:`nova.batch.items`); without a launcher one
process does all of them. The steps:

1. Rank 0 encodes every prompt with Phi-2 into ``DIR/prompt_embeds.safetensors`` and frees the
   text encoder; no process holds Phi-2 while sampling.
2. Each process samples its batches (each sample with its own generator, seeded from the run
   seed, item and sample: the same video whatever the batch or the number of processes), decodes
   each output to a temporary file, renames it into place, then appends its line to
   ``DIR/manifest.jsonl`` (:mod:`nova.batch.manifest`).
3. A unit that fails (unreadable image, bad option, ...) is recorded with its error; a batch that
   fails is retried unit by unit. The exit code is 1 when some units failed.

URSA checkpoints (``model_index.json``) run through the same steps, text only: no prompt encoding
(URSA tokenizes as it samples) and each unit sampled alone, as ``nova generate`` does with its seed.

A rerun with the same arguments skips what the manifest records as done (a kill loses at most the
batches in flight); other arguments are refused with what differs. ``DIR`` must be on a file
system every process sees (one machine, or a shared mount across machines).
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import hashlib
import logging
import os
import shutil
import time
import traceback
import uuid
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..dtypes import DTYPE_NAMES, torch_dtype
from ..errors import InputError, NovaError
from . import embed_cache, manifest
from .distributed import World
from .items import FAMILY_DEFAULTS, NOVA_ONLY, OPTIONS, URSA_KEYS, Item, Unit, plan_batches, read_items, share
from .layouts import check_collisions, check_layout, output_path, side_files

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
    # (steps and cfg None: the checkpoint family's defaults, FAMILY_DEFAULTS)
    options: Dict[str, Any] = dataclasses.field(
        default_factory=lambda: {o.key: None if o.key in FAMILY_DEFAULTS["nova"] else o.default for o in OPTIONS}
    )
    attention: str = "auto"  # the spatial encoder's mode (nova/speed/spatial_kernels.py)
    fp8_matmuls: bool = False
    compile_encoder: bool = False  # (same latents up to rounding: not part of the run's identity)

    def identity(self, folder: Optional[str] = None) -> dict:
        """What decides the outputs: a rerun in the same folder must repeat it (batch size and
        device may change: they do not change which video a unit gets). ``folder``: the resolved
        checkpoint, whose weights (their safetensors headers) are part of it."""
        with open(self.prompts, "rb") as f:
            prompts_sha256 = hashlib.sha256(f.read()).hexdigest()
        model = os.path.abspath(self.model) if os.path.isdir(self.model) else self.model
        weights = {} if folder is None else {"weights_sha256": weights_digest(folder)}
        speed = {}  # (only when set: the identities of earlier runs stay as they were)
        if self.attention != "auto":
            speed["attention"] = self.attention
        if self.fp8_matmuls:
            speed["fp8_matmuls"] = True
        # (as speed: options added later appear only when set, so the identities of earlier runs stay as they were)
        unset = {
            "denoise": None,
            "keyframe": None,
            "keyframe_approach": 2,
            "keyframe_strength": 0.5,
            "width": None,
            "height": None,
            "motion": None,
        }
        options = {k: v for k, v in self.options.items() if not (k in unset and v == unset[k])}
        return {
            "model": model,
            "prompts_sha256": prompts_sha256,
            "samples": self.samples,
            "seed": self.seed,
            "layout": self.layout,
            "dtype": self.dtype,
            "reference": self.reference,
            **options,
            **speed,
            **weights,
        }


def weights_digest(folder: str, samples: int = 16, sample_bytes: int = 1 << 16) -> str:
    """sha256 over every safetensors file of the checkpoint: its name, size and header (tensor
    names, shapes, dtypes, offsets) and ``samples`` evenly spaced slices of its data (a fine-tune
    keeps the header, not the values). Other weights in the folder give another digest, reading
    about 1 MB per file instead of gigabytes."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith(".safetensors")):
            path = os.path.join(root, name)
            size = os.path.getsize(path)
            h.update(f"{os.path.relpath(path, folder)}\0{size}\0".encode())
            with open(path, "rb") as f:
                head = f.read(8)
                header = int.from_bytes(head, "little") if len(head) == 8 else 0
                h.update(f.read(min(header, 100 << 20)))
                for k in range(samples):
                    f.seek(size * k // samples)
                    h.update(f.read(sample_bytes))
    return h.hexdigest()


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
    """Run (or resume) a batch job in this process, as one rank of the launcher's process group.
    Everything knowable from the arguments, the prompt file, the checkpoint's config and the
    run-wide input files is checked before the output folder is touched or a prompt encoded."""
    from .. import checks
    from ..components.config import load_config
    from ..components.loading import resolve_checkpoint
    from ..sampling.fast import Accel
    from ..ursa.config import URSA_PIPELINE, read_family

    if job.dtype not in DTYPE_NAMES:
        raise InputError(f"dtype {job.dtype!r}; expected one of {', '.join(DTYPE_NAMES)}.")
    Accel.choose(
        job.reference, job.attention, job.fp8_matmuls, job.compile_encoder
    )  # (a bad mode fails before any process starts)
    # (the options and the prompt file checked before a download: steps and cfg, if unset, valid either way)
    early = {
        k: FAMILY_DEFAULTS["nova"][k] if k in FAMILY_DEFAULTS["nova"] and v is None else v
        for k, v in job.options.items()
    }
    checks.check_options(early, combined=False)
    read_items(job.prompts, early)
    folder = resolve_checkpoint(job.model)
    ursa = read_family(folder) == URSA_PIPELINE
    defaults = FAMILY_DEFAULTS["ursa" if ursa else "nova"]
    job = dataclasses.replace(
        job, options={k: defaults[k] if k in defaults and v is None else v for k, v in job.options.items()}
    )
    checks.check_options(job.options, combined=False)  # the run-wide defaults: a bad one would fail every item
    if ursa:
        return _run_family(job, folder, _ursa_info(job, folder), _ursa_item_error)
    given = [o.flag for o in OPTIONS if o.key in URSA_KEYS and job.options[o.key] is not None]
    if given:
        raise InputError(f"{', '.join(given)}: URSA options; {folder} is a NOVA checkpoint.")
    config = load_config(os.path.join(folder, "transformer", "config.json"))
    return _run_family(job, folder, config, _item_error)


def _run_family(job: BatchJob, folder: str, config, item_error) -> BatchSummary:
    """The run itself, the same for both families: ``config`` is the NOVA config or an
    :class:`_UrsaInfo`; ``item_error`` the family's check of one item's options."""
    from .. import checks

    ursa = isinstance(config, _UrsaInfo)
    read = read_items(job.prompts, job.options)
    checks.check_media(job.options, config.is_video_model)  # run-wide --image/--video/--mask: readable, not too large
    seen: Dict[tuple, Optional[str]] = {}  # (items sharing their options and prompt count are checked once)
    items = [_checked_item(item, config, seen, item_error) for item in read]
    check_layout(job.layout, config.is_video_model)
    check_collisions(items, job.layout, config.is_video_model)
    batches = plan_batches(items, job.samples, job.batch_size, job.seed)
    if not ursa:
        checks.warn_about_steps(job.options["steps"], config)
    out = os.path.abspath(job.out)
    manifest_path = os.path.join(out, manifest.NAME)
    identity = job.identity(folder)
    manifest.check_same_args(manifest.read(manifest_path), identity, manifest_path)
    world, handlers, lock, created = None, [], None, False
    try:  # whatever fails from here on (even the output folder), the process group is closed
        world = World.start(job.device)
        if not ursa:
            from ..speed.spatial_kernels import check_runnable

            check_runnable(
                job.attention, job.fp8_matmuls, job.compile_encoder, world.device, torch_dtype(job.dtype), config
            )
        existed = os.path.exists(out)
        os.makedirs(os.path.join(out, "logs"), exist_ok=True)
        if world.main:
            lock = _lock_folder(out)
        created = not existed  # (set once locked: a run refused by the lock removes nothing)
        handlers = _rank_log(out, world.rank)
        return _run(job, world, out, items, folder, config, batches, identity)
    except BaseException:
        if created and world is not None and world.main and not manifest.finished(_records(manifest_path), out):
            shutil.rmtree(out, ignore_errors=True)  # an early failure leaves no folder behind
        raise
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()
        if lock is not None:
            os.close(lock)  # (closing releases the lock; a killed process's lock goes with it)
        if world is not None:
            world.close()


def _checked_item(item: Item, config, seen: Dict[tuple, Optional[str]], item_error) -> Item:
    """An item with the error its options, input files and frame counts give it on this
    checkpoint, found before any work (the same checks as ``generate``, a clip's length and size
    from its header so that a thousand items stay cheap; the worker decodes the files when it
    gets to the item, and checks them again). ``seen``: the outcome for each set of options so far."""
    if item.error is not None:
        return item
    key = (len(item.prompts), tuple(sorted(item.options.items())))
    if key not in seen:
        seen[key] = item_error(item.options, len(item.prompts), config)
    return item if seen[key] is None else dataclasses.replace(item, error=f"line {item.line}: {seen[key]}")


def _item_error(o: Dict[str, Any], prompts: int, config) -> Optional[str]:
    from ..request import read_request

    try:
        given = [key for key in URSA_KEYS if o[key] is not None]
        if given:
            raise InputError(f"{', '.join(given)}: URSA options; this is a NOVA checkpoint.")
        read_request(o, ("",) * prompts, config, _key_name, decode=False)  # (a clip from its header)
    except InputError as exc:
        return str(exc)
    return None


def _records(manifest_path: str) -> List[dict]:
    try:
        return manifest.read(manifest_path)
    except NovaError:
        return []


LOCK = ".lock"


def _lock_folder(out: str) -> int:
    """One run per output folder: an exclusive POSIX record lock on DIR/.lock, held until this
    process exits (the kernel drops it when a run is killed, so nothing stays stuck)."""
    path = os.path.join(out, LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if manifest.fcntl is None:  # (Windows: one run per folder is up to the user)
        return fd
    try:
        manifest.fcntl.lockf(fd, manifest.fcntl.LOCK_EX | manifest.fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise InputError(
            f"{out}: another batch run is writing to this folder (it holds {path}); wait for it "
            "to finish, or write to another --out folder."
        ) from None
    return fd


def _run(job: BatchJob, world: World, out: str, items, folder: str, config, batches, identity: dict) -> BatchSummary:
    manifest_path = os.path.join(out, manifest.NAME)
    log.info(
        "rank %d/%d on %s: %d items x %d samples, batch size %d; logs in %s",
        world.rank,
        world.size,
        world.device,
        len(items),
        job.samples,
        job.batch_size,
        os.path.join(out, "logs"),
    )
    if world.main:  # one process prepares the folder and encodes the prompts, the others wait
        manifest.check_same_args(manifest.read(manifest_path), identity, manifest_path)  # (now under the lock)
        _set_up_folder(out, folder, items, config, job, world, identity)
    # (no weights for a run whose items all failed their checks: they are only recorded)
    needed = any(u.item.error is None for b in batches for u in b)
    pipe = _load_pipeline(folder, job, world.device, isinstance(config, _UrsaInfo)) if needed else None
    world.barrier()

    done = manifest.finished(manifest.read(manifest_path), out)
    mine = share(batches, done, world.rank, world.size)
    total = sum(len(b) for b in batches)
    todo = sum(len(b) for b in mine)
    log.info("%d of %d outputs already done; this process makes %d in %d batches", len(done), total, todo, len(mine))
    bar = None
    try:  # the progress thread stops however this ends
        if world.main:
            from .progress import ProgressBar

            bar = ProgressBar(manifest_path, total, len(done), "videos" if config.is_video_model else "images").start()
        embeds = None  # (URSA tokenizes each prompt as it samples: there is nothing to encode first)
        if not isinstance(config, _UrsaInfo):
            texts = {t for b in mine for u in b if u.item.error is None for t in _texts(u.item)}
            embeds = embed_cache.load(
                os.path.join(out, embed_cache.NAME),
                texts,
                config.text_token_len,
                config.text_token_dim,
                torch_dtype(job.dtype),
            )
        worker = _Worker(pipe, config, job, out, world, embeds, manifest_path)
        for batch in mine:
            worker.run(batch)
        world.barrier()  # every process finishes before any exits (a launcher stops the rest at the first exit)
    finally:
        if bar is not None:
            bar.close()
    if world.main:
        shutil.rmtree(os.path.join(out, PARTIAL), ignore_errors=True)
    summary = summarize(batches, manifest.read(manifest_path), out)
    log.info(
        "finished: %d of %d done, %d failed, %d missing",
        summary.done,
        summary.total,
        len(summary.failed),
        summary.missing,
    )
    return summary


def _set_up_folder(
    out: str, folder: str, items: Sequence[Item], config, job: BatchJob, world: World, identity: dict
) -> None:
    """Rank 0, before anyone samples: clear what a killed run left half-done, encode the prompts,
    and record this start."""
    manifest_path = os.path.join(out, manifest.NAME)
    manifest.repair(manifest_path)
    shutil.rmtree(os.path.join(out, PARTIAL), ignore_errors=True)
    embed_cache.discard_partial(os.path.join(out, embed_cache.NAME))
    if not isinstance(config, _UrsaInfo):
        _encode_prompts(folder, items, out, config.text_token_len, torch_dtype(job.dtype), world.device)
    manifest.append(
        manifest_path,
        {
            "kind": "run",
            "args": identity,
            "world_size": world.size,
            "batch_size": job.batch_size,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    )


@dataclasses.dataclass(frozen=True)
class _UrsaInfo:
    """What a batch run needs to know of an URSA checkpoint before loading it."""

    is_video_model: bool
    temporal_stride: int
    spatial_stride: int


def _ursa_info(job: BatchJob, folder: str) -> _UrsaInfo:
    """An URSA run's run-wide checks: NOVA-only flags are refused, naming them."""
    from ..ursa.config import check_ursa_folder, load_vae_config

    check_ursa_folder(folder)
    speed = [
        ("--reference", job.reference),
        ("--attention", job.attention != "auto"),
        ("--fp8-matmuls", job.fp8_matmuls),
        ("--compile-encoder", job.compile_encoder),
    ]
    given = [name for name, value in speed if value]
    given += ["--" + key.replace("_", "-") for key, unset in NOVA_ONLY if job.options[key] != unset]
    if given:
        raise InputError(
            f"{', '.join(given)}: NOVA options; {folder} is an URSA checkpoint (`nova batch` runs it "
            "from text only: prompt, negative_prompt, frames, steps, cfg, width, height, motion, fps)."
        )
    vae = load_vae_config(os.path.join(folder, "vae"))
    info = _UrsaInfo(vae.video, vae.temporal_stride, vae.spatial_stride)
    error = _ursa_item_error(job.options, 1, info)  # a bad run-wide default would fail every item
    if error:
        raise InputError(error)
    return info


def _ursa_item_error(o: Dict[str, Any], prompts: int, info: _UrsaInfo) -> Optional[str]:
    given = [key for key, unset in NOVA_ONLY if o[key] != unset]
    if given:
        return f"{', '.join(given)}: NOVA options; an URSA checkpoint takes none of them."
    if prompts > 1:
        return "several prompts: URSA makes one clip per item (one prompt)."
    frames = o["frames"]
    if frames is not None:
        if not info.is_video_model and frames != 1:
            return f"frames = {frames}: an URSA image checkpoint makes 1 frame."
        if info.is_video_model and (frames < 1 or (frames - 1) % info.temporal_stride):
            return f"frames = {frames}; expected 1 + {info.temporal_stride}k frames."
    for key in ("width", "height"):
        if o[key] is not None and (o[key] < 1 or o[key] % info.spatial_stride):
            stride = info.spatial_stride
            return f"{key} = {o[key]}; expected a positive multiple of {stride} pixels (the tokenizer's stride)."
    if o["motion"] is not None and o["motion"] < 0:
        return f"motion = {o['motion']}; expected a number >= 0."
    return None


def summarize(batches: Sequence[List[Unit]], records: List[dict], out: str) -> BatchSummary:
    keys = [u.key for b in batches for u in b]
    done = manifest.finished(records, out)
    failed = {k: str(r.get("error")) for k, r in manifest.failed(records).items() if k not in done}
    return BatchSummary(
        len(keys), sum(k in done for k in keys), failed, sum(k not in done and k not in failed for k in keys)
    )


def _texts(item: Item) -> List[str]:
    negative = item.options.get("negative_prompt") or ""
    return list(item.prompts) + [negative]


def _encode_prompts(folder: str, items: Sequence[Item], out: str, max_length: int, dtype, device) -> None:
    """Phi-2 over every prompt not yet cached, then released before any sampling starts."""
    path = os.path.join(out, embed_cache.NAME)
    texts = {t for item in items if item.error is None for t in _texts(item)}
    if not set(texts) - {""} - set(embed_cache.cached(path)):
        return
    from ..components.text_encoder import TextEncoder

    t0 = time.time()
    encoder = TextEncoder.from_folders(
        os.path.join(folder, "text_encoder"), os.path.join(folder, "tokenizer"), device, dtype
    )
    count = embed_cache.encode_missing(path, texts, encoder, max_length)
    del encoder
    if device.type == "cuda":
        torch.cuda.empty_cache()
    log.info("encoded %d prompts in %.1fs (text encoder released)", count, time.time() - t0)


def _load_pipeline(folder: str, job: BatchJob, device, ursa: bool = False):
    from ..pipeline import NovaPipeline
    from ..sampling.fast import Accel

    if ursa:
        from ..ursa.pipeline import UrsaPipeline

        return UrsaPipeline.from_pretrained(folder, torch_dtype=torch_dtype(job.dtype), device=device)
    pipe = NovaPipeline.from_pretrained(
        folder, torch_dtype=torch_dtype(job.dtype), device=device, vae_dtype=torch.float32, load_text_encoder=False
    )
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
    positives: List[Any]  # nova.components.text_encoder.PromptEmbeds, one per segment
    negative: Optional[Any]
    motion_flow: float
    fps: float
    sizes: tuple
    given: Any  # nova.request.GivenFrames: prefix latents, their repaint mask and blend, keyframes
    truncated: bool  # a prompt was longer than the text encoder's window (cut, as the official code does)

    @property
    def signature(self) -> tuple:
        prefix, regen = self.given.prefix, self.given.mask
        regen = None if regen is None else hashlib.sha256(regen.cpu().numpy().tobytes()).hexdigest()
        return self.sizes, None if prefix is None else tuple(prefix.shape), regen


class _Worker:
    """Samples, writes and records the batches of one process."""

    def __init__(self, pipe, config, job: BatchJob, out: str, world: World, embeds, manifest_path: str):
        self.pipe, self.job, self.out, self.world, self.embeds = pipe, job, out, world, embeds
        self.manifest_path = manifest_path
        self.config, self.video = config, config.is_video_model
        self.ursa = isinstance(config, _UrsaInfo)
        self.tmp = os.path.join(out, PARTIAL, f"rank-{world.rank}")
        os.makedirs(self.tmp, exist_ok=True)

    @torch.inference_mode()
    def run(self, units: Sequence[Unit]) -> None:
        if self.ursa:  # one unit after the other, whatever the batch size
            for unit in units:
                self._ursa_unit(unit)
            return
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
                self._write_failed(p.unit, exc)
        log.debug(
            "batch of %d (items %s): %.1fs",
            len(group),
            ", ".join(f"{p.unit.item.index}/{p.unit.sample}" for p in group),
            time.time() - t0,
        )

    def _write_failed(self, unit: Unit, exc: Exception) -> None:
        self._fail(unit, exc)
        if _disk_full(exc):  # every unit after it would be sampled, then fail the same way
            raise InputError(
                f"{self.out}: the disk is full ({exc}); stopped. Free some space and rerun the "
                "same command: finished outputs are kept."
            ) from exc

    def _ursa_unit(self, unit: Unit) -> None:
        """One URSA unit, as ``nova generate`` makes it with the unit's seed (nova/ursa/cli.py)."""
        from ..ursa.cli import IMAGE_SIZE, MOTION, VIDEO_SIZE

        t0 = time.time()
        item, o = unit.item, unit.item.options
        try:
            if item.error is not None:
                raise InputError(item.error)
            path = output_path(item, unit.sample, self.job.layout, self.video)
            height, width = VIDEO_SIZE if self.video else IMAGE_SIZE
            height, width = o["height"] or height, o["width"] or width
            frames = o["frames"] or (49 if self.video else 1)
            motion = MOTION if o["motion"] is None else o["motion"]
            prompt = item.prompts[0]
            if self.video and frames > 1 and motion > 0 and not prompt.lstrip().startswith("motion="):
                prompt = f"motion={float(motion)}, {prompt}"
            out = self.pipe(
                prompt=prompt,
                negative_prompt=o["negative_prompt"],
                height=height,
                width=width,
                num_frames=frames,
                num_inference_steps=o["steps"],
                guidance_scale=o["cfg"],
                generator=torch.Generator(device=self.world.device).manual_seed(unit.seed),
                output_type="np",
            )
            result = out.frames[0] if out.frames.ndim == 5 else out.frames  # [F, H, W, 3]
        except Exception as exc:
            if self.world.device.type == "cuda":
                torch.cuda.empty_cache()
            self._fail(unit, exc)
            return

        def save(tmp: str) -> None:
            from ..io.media import VideoWriter

            with VideoWriter(tmp, o["fps"]) as writer:
                writer.write(result)

        try:
            self._place(unit, path, save, time.time() - t0, None)
        except Exception as exc:
            self._write_failed(unit, exc)

    def _prepare(self, unit: Unit) -> _Prepared:
        """The unit's request read (its files decoded, checked again) and its given frames encoded."""
        from ..request import read_request
        from ..sampling.rng import new_generator
        from ..sampling.sampler import SamplerSettings

        item, o = unit.item, unit.item.options
        if item.error is not None:
            raise InputError(item.error)
        path = output_path(item, unit.sample, self.job.layout, self.video)
        settings = SamplerSettings(o["steps"], o["diffusion_steps"], o["cfg"])
        request = read_request(o, item.prompts, self.config, _key_name)
        generator = new_generator(unit.seed)  # CPU, as `generate`: the manifest's seed reproduces the output there
        given = request.given_frames(self.pipe, generator)
        negative = o["negative_prompt"]
        neg = self.embeds[negative] if negative and settings.guidance_scale > 1 else None
        positives = [self.embeds[p] for p in item.prompts]
        truncated = any(self.embeds[p].truncated[0] for p in item.prompts)
        return _Prepared(
            unit,
            path,
            generator,
            settings,
            positives,
            neg,
            o["motion_flow"],
            o["fps"],
            tuple(request.frames_per_prompt(given)),
            given,
            truncated,
        )

    def _sample(self, group: List[_Prepared]) -> torch.Tensor:
        """One plan for the group (units of one signature: the same options and frame layout), each
        sample's prompt features, prefix and generator stacked along the batch."""
        from ..components.text_encoder import PromptEmbeds
        from ..request import build_plan
        from ..sampling.plan import Segment

        o = group[0].unit.item.options
        negatives = [p.negative for p in group]
        if any(n is None for n in negatives) and not all(n is None for n in negatives):
            raise InputError("a batch mixes samples with and without a negative prompt; they need separate batches.")
        negative = None if negatives[0] is None else PromptEmbeds.cat(negatives)
        flows, fpss = [p.motion_flow for p in group], [p.fps for p in group]
        segments = [
            Segment(PromptEmbeds.cat([p.positives[k] for p in group]), size, negative, flows, fpss)
            for k, size in enumerate(group[0].sizes)
        ]
        first = group[0].given
        prefix = None if first.prefix is None else torch.cat([p.given.prefix for p in group])
        given = dataclasses.replace(first, prefix=prefix)  # (mask and keyframes: shared, by the signature)
        plan = build_plan(
            self.pipe,
            group[0].settings,
            segments,
            given,
            denoise=o["denoise"],
            window=o["window"],
            blend=o["blend"],
            loop=o["loop"],
        )
        return plan.run([p.generator for p in group])

    def _write(self, p: _Prepared, latents: torch.Tensor, sample_seconds: float) -> None:
        self._place(
            p.unit,
            p.path,
            lambda tmp: self.pipe.save(latents, tmp, fps=p.unit.item.options["fps"], blend=p.given.blend),
            sample_seconds,
            p.truncated,
        )

    def _place(self, unit: Unit, path: str, save, sample_seconds: float, truncated: Optional[bool]) -> None:
        """Writes the unit's output with ``save(temporary path)``, moves it to ``path`` and records it."""
        t0 = time.time()
        item = unit.item
        for rel, text in side_files(item, self.job.layout).items():
            self._place_text(rel, text)
        ext = os.path.splitext(path)[1]
        tmp = os.path.join(self.tmp, f"{uuid.uuid4().hex}{ext}")
        final = os.path.join(self.out, path)
        try:
            try:
                save(tmp)
            except InputError as exc:  # named by the output it was for, not the temporary file
                raise InputError(str(exc).replace(tmp, final)) from exc
            digest, size = _sha256(tmp)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        manifest.append(
            self.manifest_path,
            {
                "kind": "done",
                "item": item.index,
                "sample": unit.sample,
                "seed": unit.seed,
                "prompt": item.prompt,
                "name": item.name,
                "settings": item.options,
                "prompt_truncated": truncated,
                "path": path,
                "sha256": digest,
                "bytes": size,
                "seconds": round(sample_seconds + time.time() - t0, 3),
                "rank": self.world.rank,
            },
        )

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
        manifest.append(
            self.manifest_path,
            {
                "kind": "failed",
                "item": unit.item.index,
                "sample": unit.sample,
                "seed": unit.seed,
                "prompt": unit.item.prompt,
                "line": unit.item.line,
                "error": error,
                "rank": self.world.rank,
            },
        )


def _disk_full(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        exc = exc.__cause__
    return False


def _key_name(key: str) -> str:
    """An option as a prompt file's item names it (its JSONL key)."""
    return key


def _sha256(path: str):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest(), os.path.getsize(path)
