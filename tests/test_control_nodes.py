"""Denoise and keyframes through the nodes: NOVA AR Frame Step, NOVA Generate, NOVA Keyframes (the engine rules:
tests/test_denoise.py, tests/test_keyframes.py)."""

import os

import pytest
import torch
from pack import load_pack

load_pack()
from comfyui_nova.nodes.loaders import NovaCheckpointLoader, NovaTextEncoderLoader, NovaVAELoader  # noqa: E402
from comfyui_nova.nodes.sampling import NovaARFrameStep, NovaGenerate, NovaSetSampler  # noqa: E402
from comfyui_nova.nodes.text import NovaTextEncode  # noqa: E402
from comfyui_nova.nodes.vae import NovaVAEEncode  # noqa: E402
from comfyui_nova.nova.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_video, tiny_image):
    base = tmp_path_factory.mktemp("models")
    (base / "nova").mkdir()
    os.symlink(tiny_video, base / "nova" / "nova-tiny-video")
    os.symlink(tiny_image, base / "nova" / "nova-tiny-image")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NOVA_MODELS_DIR", str(base))
        out = {}
        for kind in ("video", "image"):
            name = f"nova-tiny-{kind}"
            te = NovaTextEncoderLoader.execute(name)[0]
            out[kind] = {
                "model": NovaCheckpointLoader.execute(name)[0],
                "vae": NovaVAELoader.execute(name)[0],
                "cond": NovaTextEncode.execute(te, "a fox")[0],
            }
        out["sampler"] = NovaSetSampler.execute(4, 4, 5.0)[0]
        yield out


def _step(c, sampler, latents, add=0, denoise=1.0, seed=3):
    return NovaARFrameStep.execute(
        c["model"], c["cond"], sampler, add, seed, 5.0, 12.0, latents=latents, denoise=denoise
    )[0]


def test_frame_step_denoise(comfy):
    c, sampler = comfy["video"], comfy["sampler"]
    given = NovaARFrameStep.execute(c["model"], c["cond"], sampler, 2, 1, 5.0, 12.0)[0]
    before = given["samples"].clone()
    assert torch.equal(_step(c, sampler, given, denoise=0.0)["samples"], before)
    half = _step(c, sampler, given, denoise=0.5)["samples"]
    assert half.shape == before.shape and not torch.equal(half, before)
    # more strength, further from the given frames
    far = _step(c, sampler, given, denoise=1.0 - 1e-6)["samples"]
    assert (half - before).norm() < (far - before).norm()
    # continued after the re-sampled frames; the input is never modified (ComfyUI caches it)
    longer = _step(c, sampler, given, add=1, denoise=0.5)["samples"]
    assert longer.shape[2] == 3 and torch.equal(given["samples"], before)
    # 1: the node's behaviour without denoise (the given frames kept, then continued)
    kept = _step(c, sampler, given, add=1, denoise=1.0)["samples"]
    assert torch.equal(kept[:, :, :2], before)


def test_generate_denoise_equals_encode_then_frame_step(comfy):
    c, sampler = comfy["video"], comfy["sampler"]
    clip = torch.rand(5, 64, 96, 3)
    frames, _, latent = NovaGenerate.execute(
        c["model"], c["vae"], c["cond"], sampler, 9, 3, 5.0, 12.0, start_image=clip, denoise=0.5
    )
    encoded = NovaVAEEncode.execute(c["vae"], clip, 96, 64, "crop")[0]
    chain = _step(c, sampler, encoded, add=1, denoise=0.5)
    assert frames.shape == (9, 64, 96, 3) and torch.equal(latent["samples"], chain["samples"])


def test_generate_image_to_image(comfy):
    c, sampler = comfy["image"], comfy["sampler"]
    image = torch.rand(1, 64, 64, 3)
    encoded = NovaVAEEncode.execute(c["vae"], image, 64, 64, "crop")[0]["samples"]
    out = []
    for denoise in (0.0, 0.5, 1.0 - 1e-6):
        frames, _, latent = NovaGenerate.execute(
            c["model"], c["vae"], c["cond"], sampler, 1, 3, 5.0, 12.0, start_image=image, denoise=denoise
        )
        assert frames.shape == (1, 64, 64, 3)
        out.append(latent["samples"])
    torch.testing.assert_close(out[0], encoded)  # (Generate encodes itself: same pixels, rounding aside)
    assert 0 < float((out[1] - out[0]).norm()) < float((out[2] - out[0]).norm())


@pytest.mark.parametrize("bad", [float("nan"), -0.5, 1.01])
def test_bad_denoise(comfy, bad):
    c = comfy["video"]
    with pytest.raises(InputError, match="denoise = .*expected a number in"):
        NovaARFrameStep.execute(c["model"], c["cond"], comfy["sampler"], 1, 0, 5.0, 12.0, denoise=bad)
    with pytest.raises(InputError, match="denoise = .*expected a number in"):
        NovaGenerate.execute(c["model"], c["vae"], c["cond"], comfy["sampler"], 5, 0, 5.0, 12.0, denoise=bad)


def test_denoise_needs_something_to_start_from(comfy):
    c = comfy["video"]
    with pytest.raises(InputError, match="denoise = 0.5 needs given latents"):
        NovaARFrameStep.execute(c["model"], c["cond"], comfy["sampler"], 1, 0, 5.0, 12.0, denoise=0.5)
    with pytest.raises(InputError, match="denoise = 0.5 re-samples start_image: connect start_image"):
        NovaGenerate.execute(c["model"], c["vae"], c["cond"], comfy["sampler"], 5, 0, 5.0, 12.0, denoise=0.5)


# -- keyframes ---------------------------------------------------------------------------------------


def _pictures(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 64, 96, 3, generator=g)


def test_keyframes_node_and_frame_step(comfy):
    from comfyui_nova.nodes.keyframes import NovaKeyframes

    c, sampler = comfy["video"], comfy["sampler"]
    pictures = _pictures(2)
    keep = pictures.clone()
    kf = NovaKeyframes.execute(c["vae"], pictures, "4, -1", 1, 0.5, 96, 64, "crop")[0]
    assert torch.equal(pictures, keep) and len(kf) == 2
    out = NovaARFrameStep.execute(c["model"], c["cond"], sampler, 4, 3, 5.0, 12.0, keyframes=kf)[0]["samples"]
    # latent 1 (frame 4) and latent 3 (the last frame, 12): the pictures held still, encoded
    for picture, index in zip(pictures, (1, 3)):
        still = NovaVAEEncode.execute(c["vae"], picture[None].expand(5, -1, -1, -1), 96, 64, "crop")[0]["samples"]
        torch.testing.assert_close(out[:, :, index], still[:, :, 1], rtol=0, atol=1e-5)  # (raw <-> model scale)
    # chained: previous + more; a keyframe at frame 0 of a chain step that is given latents is refused
    more = NovaKeyframes.execute(c["vae"], _pictures(1, 1), "0", 1, 0.5, 96, 64, "crop", previous=kf)[0]
    assert len(more) == 3 and more[:2] == kf
    given = NovaARFrameStep.execute(c["model"], c["cond"], sampler, 1, 0, 5.0, 12.0)[0]
    with pytest.raises(InputError, match="inside the given latents"):
        NovaARFrameStep.execute(c["model"], c["cond"], sampler, 3, 3, 5.0, 12.0, latents=given, keyframes=more)


def test_first_and_last_frame_video(comfy):
    from comfyui_nova.nodes.keyframes import NovaKeyframes

    c, sampler = comfy["video"], comfy["sampler"]
    start, end = _pictures(2, 5)
    kf = NovaKeyframes.execute(c["vae"], end[None], "-1", 2, 0.8, 96, 64, "crop")[0]
    frames, _, latent = NovaGenerate.execute(
        c["model"], c["vae"], c["cond"], sampler, 13, 3, 5.0, 12.0, start_image=start[None], keyframes=kf
    )
    still = NovaVAEEncode.execute(c["vae"], end[None].expand(5, -1, -1, -1), 96, 64, "crop")[0]["samples"]
    assert frames.shape == (13, 64, 96, 3)
    torch.testing.assert_close(latent["samples"][:, :, 3], still[:, :, 1], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "frames,match",
    [
        ("6", "keyframe frame 6 cannot be pinned exactly"),
        ("16", "keyframe frame 16 is beyond the video: it has 13 frames"),
        ("4, 7", "frames = '4, 7' names 2 frame\\(s\\) for 1 picture"),
        ("x", "expected video frame indices separated by commas"),
    ],
)
def test_keyframe_errors(comfy, frames, match):
    from comfyui_nova.nodes.keyframes import NovaKeyframes

    c = comfy["video"]
    with pytest.raises(InputError, match=match):
        kf = NovaKeyframes.execute(c["vae"], _pictures(1), frames, 1, 0.5, 96, 64, "crop")[0]
        NovaARFrameStep.execute(c["model"], c["cond"], comfy["sampler"], 4, 0, 5.0, 12.0, keyframes=kf)


def test_keyframes_refused_on_an_image_checkpoint(comfy):
    from comfyui_nova.nodes.keyframes import NovaKeyframes

    with pytest.raises(InputError, match="image checkpoint's VAE"):
        NovaKeyframes.execute(comfy["image"]["vae"], torch.rand(1, 64, 64, 3), "0", 1, 0.5, 64, 64, "crop")


def test_long_video_denoise_and_keyframes(comfy):
    from comfyui_nova.nodes.keyframes import NovaKeyframes
    from comfyui_nova.nodes.long_video import NovaLongVideo, NovaSegment

    c, sampler = comfy["video"], comfy["sampler"]
    segments = NovaSegment.execute(c["cond"], 3, 5.0, 12.0)[0]
    given = NovaARFrameStep.execute(c["model"], c["cond"], sampler, 2, 1, 5.0, 12.0)[0]

    def long(**kw):
        return NovaLongVideo.execute(c["model"], sampler, segments, 4, window=3, latents=given, **kw)[0]["samples"]

    kept = long()
    assert torch.equal(kept[:, :, :2], given["samples"]) and torch.equal(long(denoise=0.0), kept)
    half = long(denoise=0.5)
    assert half.shape == kept.shape and not torch.equal(half[:, :, :2], given["samples"])
    kf = NovaKeyframes.execute(c["vae"], _pictures(1), "-1", 1, 0.5, 96, 64, "crop")[0]
    pinned = long(keyframes=kf)
    still = NovaVAEEncode.execute(c["vae"], _pictures(1).expand(5, -1, -1, -1), 96, 64, "crop")[0]["samples"]
    torch.testing.assert_close(pinned[:, :, 4], still[:, :, 1], rtol=0, atol=1e-5)  # latent 4 = frame 16, the last
