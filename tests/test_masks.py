"""Masks (inpainting, outpainting): the pixel -> token rule, the engine keeps what is outside the
mask bit for bit, the edge cases equal plain generation / the input, the nodes and the CLI."""

import os

import numpy as np
import pytest
import torch

from nova.errors import InputError
from nova.sampling.masks import (
    feather_weights,
    grid_feather_weights,
    grid_region,
    outpaint_canvas,
    pixel_region,
    place,
    token_mask,
)

FAST = dict(num_inference_steps=4, num_diffusion_steps=2)


@pytest.fixture(scope="module")
def image_pipe(tiny_image):
    from nova import NovaPipeline

    return NovaPipeline.from_pretrained(tiny_image, device="cpu")


def _smooth_image(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([127 + 100 * np.sin(xx / 9.0), 127 + 100 * np.cos(yy / 7.0), 127 + 0 * xx], -1).astype(np.uint8)


def _clip(pipe, frames=9):
    h, w = pipe.config.image_size
    return [np.roll(_smooth_image(h, w), 3 * t, axis=1) for t in range(frames)]


def _run(pipe, seed=3, **kw):
    out = pipe("a fox", generator=torch.Generator().manual_seed(seed), output_type="latent", **FAST, **kw)
    return out.frames if pipe.config.is_video_model else out.images


# -- the pixel -> token rule ---------------------------------------------------------------------


def test_token_rule_threshold_partial_tokens_and_grow(tiny_video_pipe):
    cfg = tiny_video_pipe.config  # 96x64 pixels, 6x4 tokens of 16x16 pixels
    mask = np.zeros((64, 96), np.float32)
    mask[20, 40] = 0.6  # one pixel above the threshold: its token (row 1, column 2) is regenerated
    mask[50, 10] = 0.4  # below it: nothing
    regen = token_mask(mask, cfg, 1)
    assert regen.shape == (1, 24) and regen.sum() == 1 and regen[0, 1 * 6 + 2]
    assert token_mask(mask, cfg, 1, threshold=0.3).sum() == 2
    grown = token_mask(mask, cfg, 1, grow=1).view(4, 6)
    assert grown.sum() == 9 and grown[0:3, 1:4].all()


def test_pixel_latent_and_any_resolution_masks_agree(tiny_video_pipe):
    cfg = tiny_video_pipe.config
    tokens = torch.rand(4, 6) > 0.5
    latent = tokens.float().repeat_interleave(2, 0).repeat_interleave(2, 1)  # latent size 8x12
    pixel = tokens.float().repeat_interleave(16, 0).repeat_interleave(16, 1)  # 64x96
    big = tokens.float().repeat_interleave(80, 0).repeat_interleave(80, 1)  # 320x480, same aspect
    wide = torch.nn.functional.pad(pixel, (16, 16))  # wider: center-cropped like the images
    for m in (latent, pixel, big, wide, (pixel.numpy() * 255).astype(np.uint8), pixel[None, None]):
        assert torch.equal(token_mask(m, cfg, 1)[0], tokens.flatten())


def test_frames_of_a_mask(tiny_video_pipe):
    cfg = tiny_video_pipe.config
    video = torch.zeros(9, 64, 96)
    video[4, 0, 0] = 1  # frame 4 belongs to latent 1 (frames 1..4)
    video[5, 63, 95] = 1  # frame 5 to latent 2 (frames 5..8)
    regen = token_mask(video, cfg, 3)
    assert regen.sum(1).tolist() == [0, 1, 1] and regen[1, 0] and regen[2, 23]
    assert torch.equal(token_mask(video[:3], cfg, 3)[1], regen[0])  # 3 frames = one per latent
    assert torch.equal(token_mask(video[4:5], cfg, 3), regen[1:2].expand(3, -1))  # 1 frame = all frames
    assert torch.equal(token_mask(torch.cat([video, video[:2]]), cfg, 3), regen)  # clip of 11: 9 were encoded
    # one latent frame: a batch of per-image masks is refused, not cut to its first mask ...
    with pytest.raises(InputError, match="has 3 frames.*Give 1 mask frame.*not cut to its first"):
        token_mask(video[3:6], cfg, 1)
    # ... unless the latents are known to come from a clip that long (4 frames encode to 1 latent)
    assert torch.equal(token_mask(video[4:7], cfg, 1, clip_frames=4), token_mask(video[4], cfg, 1))
    with pytest.raises(InputError, match="has 3 frames"):
        token_mask(video[4:7], cfg, 1, clip_frames=2)
    # a clip of 9 frames takes at most 9 mask frames: 12 are refused, not cut to 9
    with pytest.raises(InputError, match="has 12 frames for a clip of 9"):
        token_mask(torch.cat([video, video[:3]]), cfg, 3, clip_frames=9)
    # grow is bounded (each step is a pass over the frames; 64 tokens already cover any frame)
    with pytest.raises(InputError, match=r"mask grow = 1000000000; expected an integer in \[0, 64\]"):
        token_mask(video, cfg, 3, grow=10**9)
    with pytest.raises(InputError, match=r"feather = 100000; expected an integer in \[0, 256\]"):
        feather_weights(torch.ones(1, 8, 8), 10**5)


@pytest.mark.parametrize(
    "mask, match",
    [
        (torch.zeros(5, 64, 96), "has 5 frames.*Give 1 or 3 or 9"),
        (torch.zeros(1, 3, 5), "cannot be mapped to the 6x4 token grid"),
        (torch.full((64, 96), float("nan")), "NaN"),
        (torch.full((64, 96), 2.0), "expected 0 .keep. .. 1"),
        (torch.zeros(2, 2, 64, 96), "expected \\[H, W\\]"),
    ],
)
def test_bad_masks_are_refused(tiny_video_pipe, mask, match):
    with pytest.raises(InputError, match=match):
        token_mask(mask, tiny_video_pipe.config, 3)


def test_pipeline_mask_needs_frames_to_repaint(image_pipe):
    with pytest.raises(InputError, match="exactly one of image, video or latents"):
        _run(image_pipe, mask=np.ones((64, 64)))


def test_pipeline_bounds_grow_and_feather_before_encoding(image_pipe, monkeypatch):
    def encode(*args, **kwargs):
        raise AssertionError("the image was encoded before the bad value was reported")

    monkeypatch.setattr(image_pipe.vae, "encode", encode)
    img = _smooth_image(64, 64)
    with pytest.raises(InputError, match=r"mask grow = 1000000000; expected an integer in \[0, 64\]"):
        _run(image_pipe, image=img, mask=np.ones((64, 64)), mask_grow=10**9)
    with pytest.raises(InputError, match=r"feather = 1000000000; expected an integer in \[0, 256\]"):
        _run(image_pipe, image=img, mask=np.ones((64, 64)), mask_feather=10**9)


# -- the engine --------------------------------------------------------------------------------


def test_image_inpainting_keeps_outside_tokens_bit_identical(image_pipe):
    img = _smooth_image(64, 64)
    mask = np.zeros((64, 64))
    mask[10:30, 40:60] = 1  # tokens (0..1, 2..3) of the 4x4 grid
    out = _run(image_pipe, image=img, mask=mask)[:, :, 0]
    source = _run(image_pipe, image=img, mask=np.zeros((64, 64)))[:, :, 0]  # all zero: the input unchanged
    src = torch.from_numpy(img).float().sub(127.5).div(127.5).permute(2, 0, 1)[None]
    assert torch.equal(source, image_pipe.vae.encode(src, sample=False))
    regen = token_mask(mask, image_pipe.config, 1)[0].view(4, 4)
    keep = (~regen).repeat_interleave(2, 0).repeat_interleave(2, 1)  # latent pixels of kept tokens
    assert regen.sum() == 4
    assert torch.equal(out[..., keep], source[..., keep])
    assert (out[..., ~keep] - source[..., ~keep]).abs().mean() > 0.1


def test_all_ones_mask_is_plain_generation(image_pipe, tiny_video_pipe):
    img = _smooth_image(64, 64)
    assert torch.equal(_run(image_pipe, image=img, mask=np.ones((64, 64))), _run(image_pipe))
    prefix = tiny_video_pipe.encode_video(_clip(tiny_video_pipe))
    ones = _run(tiny_video_pipe, latents=prefix, mask=torch.ones(1, 64, 96), max_latent_length=3)
    assert torch.equal(ones, _run(tiny_video_pipe, max_latent_length=3))


def test_per_frame_masks_keep_unmasked_frames(tiny_video_pipe):
    prefix = tiny_video_pipe.encode_video(_clip(tiny_video_pipe))
    mask = torch.zeros(9, 64, 96)
    mask[2:4, :, 48:] = 1  # video frames 2, 3: right half of latent 1
    out = _run(tiny_video_pipe, latents=prefix, mask=mask, max_latent_length=4)
    assert out.shape == (1, 4, 4, 8, 12)
    assert torch.equal(out[:, :, 0], prefix[:, :, 0]) and torch.equal(out[:, :, 2], prefix[:, :, 2])
    assert torch.equal(out[:, :, 1, :, :6], prefix[:, :, 1, :, :6])
    assert (out[:, :, 1, :, 6:] - prefix[:, :, 1, :, 6:]).abs().mean() > 0.1
    # latent-size masks (one per latent frame) give the same video
    latent_size = torch.zeros(3, 8, 12)
    latent_size[1, :, 6:] = 1
    assert torch.equal(_run(tiny_video_pipe, latents=prefix, mask=latent_size, max_latent_length=4), out)


class LocalVAE:
    """A stand-in autoencoder whose decoder is local (8x8 means, upsampled back): the tiny
    checkpoints' random VAEs mix the whole picture into every pixel, a trained VAE barely does."""

    temporal, temporal_ratio = False, 1

    def encode(self, pixels, generator=None, sample=True):
        means = torch.nn.functional.avg_pool2d(pixels, 8)
        return torch.cat([means, torch.zeros_like(means[:, :1])], dim=1)

    def decode(self, latents):
        frames = [torch.nn.functional.interpolate(latents[:, :3, t], scale_factor=8.0) for t in range(latents.shape[2])]
        return torch.stack(frames, dim=2)


def test_decoded_pixels_outside_the_mask(image_pipe):
    """Feather 0: pixels whose tokens are all outside the mask are the source's VAE round trip;
    feather > 0: they are the source exactly and the blend ramps up inside the mask."""
    from nova import NovaPipeline

    pipe = NovaPipeline(image_pipe.transformer, image_pipe.scheduler, LocalVAE(), image_pipe.text_encoder)
    img = _smooth_image(64, 64)
    mask = np.zeros((64, 64))
    mask[:, 40:] = 1  # token columns 2, 3 (pixels 32..63)
    src = torch.from_numpy(img).float().sub(127.5).div(127.5).permute(2, 0, 1)[None]
    kw = dict(image=img, mask=mask, output_type="pt", **FAST)
    plain = pipe("a fox", generator=torch.Generator().manual_seed(3), **kw).images
    round_trip = pipe.decode_latents(pipe.vae.encode(src).unsqueeze(2))[:, :, 0]
    assert torch.equal(plain[..., :32], round_trip[..., :32])
    assert (plain[..., 32:] - round_trip[..., 32:]).abs().mean() > 0.1
    feathered = pipe("a fox", mask_feather=8, generator=torch.Generator().manual_seed(3), **kw).images
    assert torch.equal(feathered[..., :32], src[..., :32])
    assert torch.equal(feathered[..., 41:], plain[..., 41:])  # 9+ pixels inside the edge: the generated pixels
    w = feather_weights(pixel_region(token_mask(mask, pipe.config, 1), pipe.config), 8)[0, 0]
    assert w[31] == 0 and 0 < w[32] < w[36] < w[40] == 1


# -- outpainting ---------------------------------------------------------------------------------


def test_outpaint_canvas_places_a_4x3_clip_in_768x480():
    p = place(480, 640, 480, 768)
    assert (p.left, p.top, p.width, p.height) == (64, 0, 640, 480)
    frames = torch.rand(5, 48, 64, 3)
    canvas, mask, p = outpaint_canvas(frames, 64, 96, fill="edge")
    assert canvas.shape == (5, 64, 96, 3) and mask.shape == (1, 64, 96)
    assert (p.left, p.width) == (6, 85)
    assert mask[0, :, :6].eq(1).all() and mask[0, :, 91:].eq(1).all() and mask[0, :, 6:91].eq(0).all()
    assert torch.equal(canvas[:, :, 0], canvas[:, :, 6])  # edge fill repeats the border
    gray, _, _ = outpaint_canvas(frames, 64, 96, zoom=0.5, x=0.0, fill="gray")
    assert gray[:, :, -1].eq(0.5).all() and gray[:, -1].eq(0.5).all()
    with pytest.raises(InputError, match="fill"):
        outpaint_canvas(frames, 64, 96, fill="noise")


def test_feather_weights_once_per_region_equal_the_per_frame_ones():
    torch.manual_seed(0)
    grid = torch.rand(5, 4, 6) > 0.6
    grid[3] = grid[1]  # repeated regions are computed once
    for ratio, radius in ((4, 0), (4, 3), (4, 20), (1, 5)):
        old = feather_weights(grid_region(grid, (64, 96), ratio), radius)
        new = grid_feather_weights(grid, (64, 96), ratio, radius)
        assert new.shape == (1 + ratio * 4, 64, 96) and torch.equal(new, old)
    with pytest.raises(InputError, match="feather = -1"):
        grid_feather_weights(grid, (64, 96), 4, -1)


# -- nodes ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, tiny_video):
    from pack import load_pack

    load_pack()
    from comfyui_nova.nodes.loaders import NovaCheckpointLoader, NovaTextEncoderLoader, NovaVAELoader
    from comfyui_nova.nodes.sampling import NovaSetSampler
    from comfyui_nova.nodes.text import NovaTextEncode

    base = tmp_path_factory.mktemp("models")
    (base / "nova").mkdir()
    os.symlink(tiny_video, base / "nova" / "nova-tiny-video")
    with pytest.MonkeyPatch.context() as mp:  # the fallback host finds its model folders here
        mp.setenv("NOVA_MODELS_DIR", str(base))
        te = NovaTextEncoderLoader.execute("nova-tiny-video")[0]
        yield {
            "model": NovaCheckpointLoader.execute("nova-tiny-video")[0],
            "vae": NovaVAELoader.execute("nova-tiny-video")[0],
            "cond": NovaTextEncode.execute(te, "a swan")[0],
            "sampler": NovaSetSampler.execute(4, 2, 5.0)[0],
        }


def test_ar_step_honours_noise_mask_at_any_size(nodes):
    from comfyui_nova.nodes.sampling import NovaARFrameStep, NovaGenerate
    from comfyui_nova.nodes.vae import NovaVAEDecode, NovaVAEEncode
    from comfyui_nova.nova.errors import InputError  # the pack's copy of the engine

    clip = torch.rand(9, 64, 96, 3)
    given = NovaVAEEncode.execute(nodes["vae"], clip, 96, 64, "crop")[0]
    pixel = torch.zeros(9, 1, 64, 96)
    pixel[5:, :, :, 48:] = 1  # latent 2, right half
    latent = torch.zeros(3, 1, 8, 12)
    latent[2, :, :, 6:] = 1
    args = (nodes["model"], nodes["cond"], nodes["sampler"], 0, 4, 5.0, 12.0)
    snapshot = pixel.clone()
    a = NovaARFrameStep.execute(*args, latents={**given, "noise_mask": pixel})[0]
    b = NovaARFrameStep.execute(*args, latents={**given, "noise_mask": latent})[0]
    assert torch.equal(pixel, snapshot) and "noise_mask" not in a
    assert torch.equal(a["samples"], b["samples"])
    g, s = given["samples"], a["samples"]
    assert torch.equal(s[:, :, :2], g[:, :, :2]) and torch.equal(
        s[:, :, 2, :, :6], g[:, :, 2, :, :6]
    )  # raw, bit for bit
    assert not torch.equal(s[:, :, 2, :, 6:], g[:, :, 2, :, 6:])
    frames, _ = NovaVAEDecode.execute(nodes["vae"], a, 12.0, 5, source=clip, feather=4)
    assert torch.equal(frames[:5], clip[:5]) and torch.equal(
        frames[5:, :, :48], clip[5:, :, :48]
    )  # outside: the source
    assert not torch.equal(frames[5:, :, 56:], clip[5:, :, 56:])
    # a chained step continues the repainted clip (its mask is used up)
    assert NovaARFrameStep.execute(*args[:3], 1, 4, 5.0, 12.0, latents=a)[0]["samples"].shape == (1, 4, 4, 8, 12)
    # NOVA Long Video repaints them too (under the first segment's prompt) before continuing
    from comfyui_nova.nodes.long_video import NovaLongVideo, NovaSegment

    segs = NovaSegment.execute(nodes["cond"], 1, 5.0, 12.0)[0]
    long = NovaLongVideo.execute(
        nodes["model"], nodes["sampler"], segs, 4, window=3, latents={**given, "noise_mask": pixel}
    )[0]["samples"]
    assert (
        long.shape == (1, 4, 4, 8, 12)
        and torch.equal(long[:, :, :2], g[:, :, :2])
        and torch.equal(long[:, :, 2, :, :6], g[:, :, 2, :, :6])
    )
    assert not torch.equal(long[:, :, 2, :, 6:], g[:, :, 2, :, 6:])
    # NOVA Generate with start_image + mask is the same repaint
    _, _, latents = NovaGenerate.execute(
        nodes["model"],
        nodes["vae"],
        nodes["cond"],
        nodes["sampler"],
        9,
        4,
        5.0,
        12.0,
        start_image=clip,
        mask=pixel[:, 0],
    )
    assert torch.equal(latents["samples"], s)
    with pytest.raises(InputError, match="noise_mask has 4 frames"):
        NovaARFrameStep.execute(*args, latents={**given, "noise_mask": pixel[:4]})
    with pytest.raises(InputError, match="nothing to generate"):  # frames = the given latent frame, no mask
        NovaGenerate.execute(
            nodes["model"], nodes["vae"], nodes["cond"], nodes["sampler"], 1, 4, 5.0, 12.0, start_image=clip[:1]
        )
    with pytest.raises(InputError, match="mask needs start_image"):
        NovaGenerate.execute(
            nodes["model"], nodes["vae"], nodes["cond"], nodes["sampler"], 9, 4, 5.0, 12.0, mask=pixel[:, 0]
        )
    # a mask longer than the clip it repaints is refused, not cut to the clip
    longer = torch.cat([pixel[:, 0], pixel[:3, 0]])
    with pytest.raises(InputError, match="mask has 12 frames for a clip of 9; give 1, 3 .* or up to 9"):
        NovaGenerate.execute(
            nodes["model"],
            nodes["vae"],
            nodes["cond"],
            nodes["sampler"],
            9,
            4,
            5.0,
            12.0,
            start_image=clip,
            mask=longer,
        )
    with pytest.raises(InputError, match="noise_mask has 12 frames for a clip of 9"):
        NovaARFrameStep.execute(*args, latents={**given, "noise_mask": longer[:, None]})


def test_chained_step_keeps_the_repainted_area_for_the_feather(nodes, caplog):
    from comfyui_nova.nodes.sampling import NovaARFrameStep
    from comfyui_nova.nodes.vae import NovaVAEDecode, NovaVAEEncode

    clip = torch.rand(9, 64, 96, 3)
    given = NovaVAEEncode.execute(nodes["vae"], clip, 96, 64, "crop")[0]
    mask = torch.zeros(1, 64, 96)
    mask[:, :, 48:] = 1
    args = (nodes["model"], nodes["cond"], nodes["sampler"])
    repainted = NovaARFrameStep.execute(*args, 0, 4, 5.0, 12.0, latents={**given, "noise_mask": mask})[0]
    chained = NovaARFrameStep.execute(*args, 1, 5, 5.0, 12.0, latents=repainted)[0]
    assert torch.equal(chained["nova_repainted"], repainted["nova_repainted"])
    frames, _ = NovaVAEDecode.execute(nodes["vae"], chained, 12.0, 5, source=clip, feather=4)
    assert frames.shape[0] == 13 and torch.equal(frames[:9, :, :48], clip[:, :, :48])  # feathered, not the plain decode
    with caplog.at_level("WARNING", logger="nova"):
        plain, _ = NovaVAEDecode.execute(nodes["vae"], given, 12.0, 5, source=clip, feather=4)
    assert "no repainted area" in caplog.text and not torch.equal(plain[:, :, :48], clip[:, :, :48])


def test_stretched_latents_get_stretched_masks(nodes, tiny_video_pipe):
    from comfyui_nova.nodes.masks import feather_decoded, noise_mask_tokens
    from comfyui_nova.nodes.vae import NovaVAEEncode
    from comfyui_nova.nova.errors import InputError as PackInputError  # the pack's copy of the engine
    from comfyui_nova.nova.io.pixels import fit_frames

    tokens = torch.zeros(4, 6, dtype=torch.bool)
    tokens[:, 5] = True  # the right column of tokens
    wide = tokens.float().repeat_interleave(16, 0).repeat_interleave(32, 1)[None]  # 192x64: twice as wide
    assert torch.equal(token_mask(wide, tiny_video_pipe.config, 1, resize="stretch")[0], tokens.flatten())
    assert token_mask(wide, tiny_video_pipe.config, 1).sum() == 0  # cropped: the right quarter is cut off
    image = torch.rand(1, 64, 192, 3)
    stretched = NovaVAEEncode.execute(nodes["vae"], image, 96, 64, "stretch")[0]
    assert stretched["nova_resize"] == "stretch"
    assert torch.equal(
        noise_mask_tokens({**stretched, "noise_mask": wide}, nodes["model"], 0.5, 0)[0], tokens.flatten()
    )
    # a 4-frame clip encodes to one latent frame: its 4 masks are accepted (the first one counts),
    # 4 masks for one image are not
    clip = NovaVAEEncode.execute(nodes["vae"], torch.rand(4, 64, 96, 3), 96, 64, "crop")[0]
    masks4 = torch.zeros(4, 64, 96)
    masks4[0, :, 80:] = 1
    assert torch.equal(noise_mask_tokens({**clip, "noise_mask": masks4}, nodes["model"], 0.5, 0)[0], tokens.flatten())
    one = NovaVAEEncode.execute(nodes["vae"], torch.rand(1, 64, 96, 3), 96, 64, "crop")[0]
    with pytest.raises(PackInputError, match="has 4 frames"):
        noise_mask_tokens({**one, "noise_mask": masks4}, nodes["model"], 0.5, 0)
    decoded = torch.rand(1, 64, 96, 3)
    out = feather_decoded(decoded, {**stretched, "nova_repainted": tokens[None]}, image, 4, 4)
    source = (fit_frames(image, 96, 64, "stretch") + 1).movedim(1, -1) / 2
    assert torch.allclose(out[:, :, :80], source[:, :, :80]) and torch.equal(out[:, :, 84:], decoded[:, :, 84:])


def test_long_video_takes_the_mask_rule(nodes):
    from comfyui_nova.nodes.long_video import NovaLongVideo, NovaSegment
    from comfyui_nova.nodes.vae import NovaVAEEncode

    given = NovaVAEEncode.execute(nodes["vae"], torch.rand(5, 64, 96, 3), 96, 64, "crop")[0]
    mask = torch.zeros(1, 64, 96)
    mask[:, 16:32, 48:64] = 0.4  # one token, below the default threshold
    segs = NovaSegment.execute(nodes["cond"], 1, 5.0, 12.0)[0]
    out = NovaLongVideo.execute(
        nodes["model"],
        nodes["sampler"],
        segs,
        4,
        window=3,
        latents={**given, "noise_mask": mask},
        mask_threshold=0.3,
        mask_grow=1,
    )[0]
    expected = torch.zeros(4, 6, dtype=torch.bool)
    expected[0:3, 2:5] = True  # the token (1, 3), grown by one
    assert out["samples"].shape[2] == 3 and torch.equal(out["nova_repainted"], expected.expand(2, -1, -1))


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_repaints_a_clip_under_a_mask_video(tmp_path, tiny_video, capsys):
    from nova.__main__ import main
    from nova.io.media import read_frames, write_video

    clip = np.stack(_clip_frames(9))
    write_video(clip, str(tmp_path / "clip.mp4"))
    masks = np.zeros_like(clip)
    masks[:, :, 48:] = 255
    write_video(masks, str(tmp_path / "mask.mp4"))
    write_video(masks[:5], str(tmp_path / "short.mp4"))  # 5 mask frames for a 9-frame clip
    args = [
        "generate",
        "--model",
        tiny_video,
        "--prompt",
        "a swan",
        "--video",
        str(tmp_path / "clip.mp4"),
        "--feather",
        "4",
        "--steps",
        "4",
        "--diffusion-steps",
        "2",
    ]
    assert main(args + ["--mask", str(tmp_path / "mask.mp4"), "--out", str(tmp_path / "out.mp4")]) == 0
    out = np.stack(read_frames(str(tmp_path / "out.mp4"))).astype(np.int16)
    assert out.shape == (9, 64, 96, 3)
    # the kept half is the source (feathered; H.264 on both sides), the other half new
    assert np.abs(out[:, :, :40] - clip[:, :, :40]).mean() < 8 < 20 < np.abs(out[:, :, 56:] - clip[:, :, 56:]).mean()
    assert main(args + ["--mask", str(tmp_path / "short.mp4"), "--out", str(tmp_path / "bad.mp4")]) == 2
    assert "has 5 frames" in capsys.readouterr().err and not (tmp_path / "bad.mp4").exists()


def _clip_frames(n):
    return [np.roll(_smooth_image(64, 96), 3 * t, axis=1) for t in range(n)]
