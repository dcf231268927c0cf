"""One generation request, whichever front end it came from, checked once and turned into a plan.

``nova generate`` (its flags), ``nova batch`` (each JSONL line over the run's defaults) and any
other caller holding the same options describe a generation as a mapping with every key of
:data:`nova.batch.items.OPTIONS` plus its prompts. :func:`read_request` applies every rule
(nova/checks.py) and reads the input files, before any weight loads; the :class:`Request` it
returns then encodes its given frames with a loaded pipeline and builds the
:class:`~nova.sampling.plan.GenerationPlan`. :func:`build_plan` is the one place a plan is made:
``NovaPipeline.__call__`` and the nodes call it too, with the pieces they already hold.

Stages, as every front end runs them::

    request = read_request(options, prompts, config)        # checks, input files read
    given = request.given_frames(pipe, generator)           # image / clip / mask / keyframes encoded
    segments = [pipe.segment(p, n, ...) for p, n in zip(request.prompts, request.frames_per_prompt(given))]
    plan = request.plan(pipe, settings, segments, given)    # then plan.run(generator, progress)
"""

from __future__ import annotations

import dataclasses
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from . import checks


@dataclasses.dataclass(frozen=True)
class GivenFrames:
    """The frames a generation starts from, as latents: ``prefix`` [B, C, T, h, w] (None: none),
    the token mask that repaints them and the decoded-result blend (masks), and the pinned
    keyframes."""

    prefix: Optional[Any] = None
    mask: Optional[Any] = None
    blend: Optional[Any] = None
    keyframes: Optional[list] = None

    @property
    def frames(self) -> int:
        """How many latent frames are given."""
        return 0 if self.prefix is None else self.prefix.shape[2]


@dataclasses.dataclass(frozen=True)
class Request:
    """A checked request. ``options`` holds every key of :data:`nova.batch.items.OPTIONS`;
    ``latents`` is the length of the result in latent frames (given ones included); ``image``
    ([H, W, 3] uint8), ``clip`` (a list of such frames, decoded no further than the request uses),
    ``mask`` ([M, H, W] floats) and ``keyframes`` ((picture, video frame) pairs) are the input
    files' contents (None / empty when not given)."""

    options: Mapping[str, Any]
    prompts: Tuple[str, ...]
    video_model: bool
    latents: int
    image: Optional[Any] = None
    clip: Optional[list] = None
    mask: Optional[Any] = None
    keyframes: Tuple[tuple, ...] = ()

    def given_frames(self, pipe, generator) -> GivenFrames:
        """The given frames encoded by ``pipe`` (a :class:`nova.pipeline.NovaPipeline`), as
        :func:`encode_given` encodes them."""
        o = self.options
        return encode_given(
            pipe,
            generator,
            image=self.image,
            clip=self.clip,
            mask=self.mask,
            threshold=o["mask_threshold"],
            grow=o["mask_grow"],
            feather=o["feather"],
            keyframes=self.keyframes,
            total=self.latents,
            approach=o["keyframe_approach"],
            strength=o["keyframe_strength"],
        )

    def frames_per_prompt(self, given: GivenFrames) -> List[int]:
        """The new latent frames of each prompt's segment, after the given ones."""
        return split_frames(self.latents - given.frames, len(self.prompts))

    def plan(self, pipe, settings, segments: Sequence, given: GivenFrames):
        """The :class:`~nova.sampling.plan.GenerationPlan` of this request, from its segments (one
        per prompt, made with :meth:`frames_per_prompt`) and its encoded given frames."""
        o = self.options
        return build_plan(
            pipe, settings, segments, given, denoise=o["denoise"], window=o["window"], blend=o["blend"], loop=o["loop"]
        )


def encode_given(
    pipe,
    generator,
    *,
    image=None,
    clip=None,
    prefix=None,
    mask=None,
    threshold: float = 0.5,
    grow: int = 0,
    feather: int = 0,
    keyframes=(),
    total: int = 1,
    approach: int = 2,
    strength: float = 0.5,
) -> GivenFrames:
    """The frames a generation starts from, encoded by ``pipe`` (a NovaPipeline): one of ``image``
    (uint8 [H, W, 3]), ``clip`` (uint8 frames) or ``prefix`` (latents [B, C, N, h, w]). Under
    ``mask`` they are encoded to the posterior mean with the token mask that repaints them
    (nova/sampling/masks.py); else a clip is its posterior mean and an image its posterior sample,
    drawn first from ``generator`` as the official code does. ``keyframes``, (picture, video frame)
    pairs in a video of ``total`` latent frames, are encoded before any given frame (posterior
    means: no draw), so a bad one fails first."""
    from .sampling.masks import masked_prefix

    repaint = blend = None
    if mask is not None:
        source = {"video": clip} if clip is not None else {"image": image} if image is not None else {"latents": prefix}
        prefix, repaint, blend = masked_prefix(pipe, mask, threshold=threshold, grow=grow, feather=feather, **source)
    pinned = pipe.keyframes(keyframes, total, approach, strength) if keyframes else None
    if mask is None and clip is not None:
        prefix = pipe.encode_video(clip)
    elif mask is None and image is not None:
        prefix = pipe.encode_image(image, generator).unsqueeze(2)
    return GivenFrames(prefix, repaint, blend, pinned)


def read_request(
    options: Mapping[str, Any],
    prompts: Sequence[str],
    config,
    name=checks.flag,
    decode: bool = True,
    checkpoint: str = "this",
) -> Request:
    """Every rule of a request on a checkpoint of ``config`` (its transformer config), and its
    input files read: sizes and frame counts from the headers first, then the frames it uses.
    ``name`` spells an option the way the caller's user wrote it (``--mask-grow``, ``mask_grow``).
    ``decode=False`` checks a clip and its mask from their headers only, decoding no frame of
    the clip (a batch checks every item so before any work), and returns a request without the
    files' contents. ``checkpoint`` names the
    checkpoint in messages (its folder)."""
    from .io.media import read_frames
    from .sampling.keyframes import latent_index

    video = config.is_video_model
    checks.check_options(options, len(prompts), name)
    checks.check_model_kind(options, len(prompts), video, name, checkpoint)
    if decode:
        image, clip, mask = checks.read_media(options, video, name)
        clip_frames = None if clip is None else len(clip)
    else:
        image = clip = None
        clip_frames, mask = checks.check_media(options, video, name)
    latents = checks.plan_latents(options, video, len(prompts), clip_frames, name)
    if mask is not None:
        checks.check_mask(options, config, mask, clip_frames)
    pairs = checks.keyframe_pairs(options["keyframe"], name)
    for _, frame in pairs:  # every frame checked before any picture is read
        latent_index(frame, latents)
    pictures = tuple((read_frames(path, name("keyframe"), max_frames=1)[0], frame) for path, frame in pairs)
    if not decode:
        return Request(options, tuple(prompts), video, latents)
    return Request(options, tuple(prompts), video, latents, image, clip, mask, pictures)


def split_frames(new: int, parts: int) -> List[int]:
    """``new`` latent frames over ``parts`` segments, as evenly as they go (the first ones one
    longer); every segment gets at least one when there are enough (nova/checks.py refuses fewer)."""
    return [new // parts + (1 if i < new % parts else 0) for i in range(parts)]


def build_plan(
    model,
    settings,
    segments: Sequence,
    given: GivenFrames = GivenFrames(),
    *,
    denoise=None,
    window: int = 0,
    blend: int = 0,
    loop: int = 0,
):
    """The :class:`~nova.sampling.plan.GenerationPlan` for ``segments`` after ``given``, on
    ``model`` (anything with ``transformer``, ``scheduler`` and ``accel``: a NovaPipeline, the
    nodes' NovaModel). ``window`` 0 keeps the whole video as temporal context."""
    from .sampling.plan import GenerationPlan

    return GenerationPlan(
        model.transformer,
        model.scheduler,
        settings,
        list(segments),
        prefix=given.prefix,
        window=window or None,
        blend_frames=blend,
        loop_frames=loop,
        accel=model.accel,
        prefix_mask=given.mask,
        denoise=denoise,
        keyframes=given.keyframes,
    )
