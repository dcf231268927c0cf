"""The checks of a generation request that need no weights, in one place.

``nova generate`` and ``nova batch`` (its run-wide defaults before anything runs, and every JSONL
item as it is read) call the same functions, so a rule is written once and says the same thing
whichever way the request came in. ``options`` is a mapping with every key of
:data:`nova.batch.items.OPTIONS`; ``name`` spells a key the way the caller's user wrote it
(``--mask-grow`` on the command line, ``mask_grow`` in a JSONL line).
"""

from __future__ import annotations

import logging
import math
from typing import Callable, List, Mapping, Optional, Tuple

from .errors import InputError

log = logging.getLogger("nova")
DEFAULT_FRAMES = 33  # 9 latent frames: the training length


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_options(options: Mapping, prompts: int = 1, name: Callable[[str], str] = flag, combined: bool = True) -> None:
    """Every rule on the values themselves and, with ``combined``, on how they combine (nothing read
    from files). A batch's run-wide defaults are checked without: an item may complete them
    (a run-wide mask for items that each give their image)."""
    from .io.frames import MAX_LATENT_FRAMES, latents_for_frames, max_video_frames
    from .io.media import check_fps
    from .sampling.masks import check_feather, check_grow
    from .sampling.sampler import SamplerSettings, check_denoise

    o = options
    if o["frames"] is not None and latents_for_frames(o["frames"]) > MAX_LATENT_FRAMES:
        raise InputError(
            f"{name('frames')} = {o['frames']}; at most {max_video_frames()} ({MAX_LATENT_FRAMES} latent frames)."
        )
    check_fps(o["fps"])
    SamplerSettings(o["steps"], o["diffusion_steps"], o["cfg"])
    flow = o["motion_flow"]
    if not isinstance(flow, (int, float)) or not math.isfinite(flow) or flow < 0:
        raise InputError(f"{name('motion_flow')} = {flow}; expected a number >= 0 (official default 5).")
    for key in ("window", "blend", "loop"):
        if not isinstance(o[key], int) or o[key] < 0:
            raise InputError(f"{name(key)} = {o[key]}; expected an integer >= 0.")
    if o["window"] == 1:
        raise InputError(f"{name('window')} = 1; use at least 2 latent frames (or 0 for the whole video).")
    if o["denoise"] is not None:
        check_denoise(o["denoise"], name("denoise"))
    approach, strength = o["keyframe_approach"], o["keyframe_strength"]
    if isinstance(approach, bool) or not isinstance(approach, int) or not 0 <= approach <= 64:
        raise InputError(f"{name('keyframe_approach')} = {approach}; expected an integer in [0, 64].")
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength <= 1:
        raise InputError(f"{name('keyframe_strength')} = {strength}; expected a number in [0, 1].")
    keyframe_pairs(o["keyframe"], name)
    if combined:
        _check_combination(o, prompts, name)
    threshold = o["mask_threshold"]
    if not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
        raise InputError(f"{name('mask_threshold')} = {threshold}; expected a value in [0, 1).")
    check_grow(o["mask_grow"], name("mask_grow"))
    check_feather(o["feather"], name("feather"))


def _check_combination(o: Mapping, prompts: int, name: Callable[[str], str]) -> None:
    if o["image"] and o["video"]:
        raise InputError(
            f"pass either {name('image')} (a first frame) or {name('video')} (a clip to continue), not both."
        )
    if o["mask"] and (bool(o["image"]) == bool(o["video"]) or prompts != 1):
        raise InputError(
            f"{name('mask')} repaints one {name('image')} or one {name('video')} (not both) under one prompt."
        )
    if o["denoise"] is not None and not (o["image"] or o["video"]):
        raise InputError(
            f"{name('denoise')} {o['denoise']} re-samples given frames: set {name('image')} or "
            f"{name('video')} (or drop {name('denoise')})."
        )
    if o["keyframe"] and o["mask"]:
        raise InputError(
            f"{name('keyframe')} with {name('mask')}: a masked generation repaints given frames; pin "
            f"keyframes in a generation without {name('mask')}."
        )
    if o["mask"] and (o["window"] or o["blend"] or o["loop"]):
        raise InputError(
            f"{name('mask')} with {name('window')} {o['window']} / {name('blend')} {o['blend']} / "
            f"{name('loop')} {o['loop']}: a masked generation is one segment over all frames; leave "
            f"{name('window')}, {name('blend')} and {name('loop')} at 0."
        )


def check_model_kind(
    options: Mapping, prompts: int, video_model: bool, name: Callable[[str], str] = flag, checkpoint: str = "this"
) -> None:
    """What only a video checkpoint does: several prompts, a window, a blend, a loop, a clip to
    continue, keyframes. ``checkpoint`` names it in the message (its folder)."""
    if video_model:
        return
    o = options
    used = [name(key) for key in ("window", "blend", "loop", "video", "keyframe") if o[key]]
    used = ([f"{prompts} prompts"] if prompts > 1 else []) + used
    if used:
        raise InputError(
            f"{', '.join(used)}: need a video checkpoint ({checkpoint} is an image checkpoint; it "
            f"makes one frame). With {name('mask')}, repaint an {name('image')} instead."
        )


def keyframe_pairs(value, name: Callable[[str], str] = flag) -> List[Tuple[str, int]]:
    """The ``keyframe`` option -> [(picture path, video frame)]: a list of ``IMAGE@FRAME`` (one per
    command-line flag) or one string of them separated by ``;`` (a JSONL line); the syntax only,
    the frames are checked against the video's length by :func:`nova.request.read_request`."""
    if not value:
        return []
    parts = value.split(";") if isinstance(value, str) else list(value)
    pairs = []
    for part in parts:
        part = part.strip()
        if not part:
            continue
        path, sep, frame = part.rpartition("@")
        try:
            number = int(frame)
        except ValueError:
            number = None
        if not sep or not path or number is None:
            raise InputError(
                f"{name('keyframe')} {part!r}; expected IMAGE@FRAME, e.g. end.png@32 or end.png@-1 (the last frame)."
            )
        pairs.append((path, number))
    return pairs


def read_media(options: Mapping, video_model: bool, name: Callable[[str], str] = flag):
    """The request's ``image`` (one [H, W, 3] uint8 frame), ``video`` clip (a list of frames,
    decoded no further than the request can use) and ``mask`` ([M, H, W] floats), each None when
    not given. Sizes and frame counts are checked from the headers before decoding (:func:`probe_clip`)."""
    from .io.media import read_frames

    o = options
    image = read_frames(o["image"], name("image"), max_frames=1)[0] if o["image"] else None
    clip = None
    if o["video"]:
        probe_clip(o, video_model, name)
        clip = read_frames(o["video"], name("video"), max_frames=max_clip_frames(o, video_model))
    mask = _read_mask(o, None if clip is None else len(clip), name) if o["mask"] else None
    return image, clip, mask


def check_media(options: Mapping, video_model: bool, name: Callable[[str], str] = flag):
    """What :func:`read_media` checks, with the clip read from its header only: (the clip's frame
    count or None, the mask or None). A batch checks every item with it before any work, cheaply
    (the clip is decoded when its unit runs, and checked again then)."""
    from .io.media import read_frames

    o = options
    if o["image"]:
        read_frames(o["image"], name("image"), max_frames=1)
    clip_frames = probe_clip(o, video_model, name) if o["video"] else None
    mask = _read_mask(o, clip_frames, name) if o["mask"] else None
    return clip_frames, mask


def probe_clip(options: Mapping, video_model: bool, name: Callable[[str], str] = flag) -> int:
    """How many frames of the ``video`` clip the request reads (at most :func:`max_clip_frames`),
    from the file's header (or its packets counted, when the header has no count), before any frame
    is decoded. A clip longer than the longest generation is refused, and so is one whose frames
    would decode to more than :data:`nova.io.media.MAX_DECODED_BYTES`."""
    from .io.frames import MAX_LATENT_FRAMES, max_video_frames
    from .io.media import check_decoded_bytes, probe

    o = options
    path, label = o["video"], name("video")
    limit = max_clip_frames(o, video_model)
    info = probe(path, label, max_frames=limit)
    frames = min(info.frames, limit)
    longest = max_video_frames()
    if frames > longest:
        raise InputError(
            f"{label} {path}: more than {longest} frames; NOVA makes at most {longest} "
            f"({MAX_LATENT_FRAMES} latent frames). Give a clip of at most {longest} frames "
            f"(e.g. `ffmpeg -i IN -frames:v {longest} OUT`)."
        )
    check_decoded_bytes(frames, info.width, info.height, path, label, more=info.frames > limit)
    return frames


def _read_mask(options: Mapping, clip_frames: Optional[int], name: Callable[[str], str]):
    """The ``mask`` ([M, H, W] floats) for an image (``clip_frames`` None) or a clip of
    ``clip_frames``: a mask longer than the clip is refused from its header when it gives the count."""
    from .io.media import probe, read_frames
    from .sampling.masks import mask_from_rgb

    path, label = options["mask"], name("mask")
    limit = 1 if clip_frames is None else clip_frames

    def too_long():
        return InputError(
            f"{label} {path}: has more frames than the {limit} of {name('video')}; give "
            "1 mask frame, one per latent frame or one per clip frame."
        )

    if limit > 1 and probe(path, label, max_frames=limit).frames > limit:
        raise too_long()
    frames = read_frames(path, label, max_frames=limit + 1)
    if len(frames) > limit and limit > 1:
        raise too_long()
    return mask_from_rgb(frames, path)


def check_mask(options: Mapping, config, mask, clip_frames: Optional[int]) -> None:
    """The mask against the checkpoint's frame size and the frames it repaints (an image, or a clip
    of ``clip_frames``): the token mask the generation will compute, once before any weights load."""
    from .io.frames import frames_kept, latents_for_frames
    from .sampling.masks import token_mask

    given = 1 if clip_frames is None else latents_for_frames(frames_kept(clip_frames))
    token_mask(
        mask,
        config,
        given,
        options["mask_threshold"],
        options["mask_grow"],
        name=str(options["mask"]),
        clip_frames=clip_frames,
    )


def plan_latents(
    options: Mapping,
    video_model: bool,
    prompts: int = 1,
    clip_frames: Optional[int] = None,
    name: Callable[[str], str] = flag,
) -> int:
    """The latent frames a request makes in total, checked against what it is given: ``clip_frames``
    is the length of the ``video`` clip (None without one; an ``image`` is one latent frame). A
    clip longer than the request, or fewer new latent frames than prompts, is refused; with
    ``denoise`` the given frames are re-sampled (a clip: as long as it, unless frames asks more)."""
    from .io.frames import frames_kept, latents_for_frames

    o = options
    frames = o["frames"]
    denoise = o.get("denoise")
    if clip_frames is not None:
        given = latents_for_frames(frames_kept(clip_frames))
    else:
        given = 1 if o["image"] else 0
    if o["mask"] or (denoise is not None and clip_frames is not None):
        # the given frames are repainted or re-sampled, then continued up to frames (default: no more)
        latents = given if frames is None else (latents_for_frames(frames) if video_model else 1)
        check_fits(latents, given, name("frames"), f"the given {name('video') if clip_frames else name('image')}")
        return latents
    latents = latents_for_frames(DEFAULT_FRAMES if frames is None else frames) if video_model else 1
    if clip_frames is not None and given >= latents:
        asked = DEFAULT_FRAMES if frames is None else frames
        raise InputError(
            f"{name('video')} has {clip_frames} frames or more ({given} latent frames) and "
            f"{name('frames')} {asked} makes {latents}: nothing is left to generate; "
            f"raise {name('frames')} or give a shorter clip."
        )
    new = latents - given
    if not video_model and given and denoise is None:
        raise InputError(
            f"{name('image')} on an image checkpoint leaves nothing to generate (it makes one frame); "
            f"add {name('mask')} to repaint part of it."
        )
    if new < prompts and denoise is None:  # (re-sampled given frames are under the first prompt)
        raise InputError(
            f"{prompts} prompt(s) need at least {prompts} new latent frames after the {given} given; "
            f"raise {name('frames')} (now {DEFAULT_FRAMES if frames is None else frames})."
        )
    return latents


def check_fits(total: int, given: int, total_name: str, given_name: str) -> int:
    """The new latent frames after ``given`` in a result of ``total`` latent frames; a result
    shorter than what it is given is refused, naming both (every front end's rule)."""
    if total < given:
        raise InputError(
            f"{total_name} makes {total} latent frame(s), fewer than the {given} of {given_name}; raise {total_name}."
        )
    return total - given


def max_clip_frames(options: Mapping, video_model: bool) -> int:
    """How many frames of the ``video`` clip to decode at most: one more than the request can use,
    so a longer clip is still seen to be too long. A masked clip without frames sets the length
    itself, up to the longest generation."""
    from .io.frames import frames_for_latents, latents_for_frames, max_video_frames

    if options["frames"] is None and options["mask"]:
        return max_video_frames() + 1
    frames = DEFAULT_FRAMES if options["frames"] is None else options["frames"]
    return frames_for_latents(latents_for_frames(frames) if video_model else 1) + 1


def warn_about_steps(steps: int, config, name: str = "--steps") -> None:
    """More set steps than a frame has tokens: each step predicts at least one token, so fewer run."""
    tokens = config.num_image_tokens
    if steps > tokens:
        log.warning(
            "%s %d: a frame of this checkpoint has %d tokens, so %d set steps run per frame.",
            name,
            steps,
            tokens,
            tokens,
        )
