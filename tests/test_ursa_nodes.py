"""URSA nodes on the tiny golden checkpoints (fallback host, CPU, fp32): the generate node gives the
official frames as a native IMAGE for text-to-video, image-to-video, video extension and text-to-image,
ticks progress every step, can be cancelled, and refuses what it cannot do."""

import os

import numpy as np
import pytest
import torch
from pack import ROOT, load_pack

load_pack()
from comfyui_nova.nodes import NODES  # noqa: E402
from comfyui_nova.nodes.ursa import UrsaCheckpointLoader, UrsaGenerate  # noqa: E402
from comfyui_nova.nova.errors import CheckpointError, InputError  # noqa: E402

GOLDEN_URSA = os.path.join(ROOT, "tests", "golden_ursa")
NEGATIVE = "worst quality, low quality, inconsistent motion, static, still, blurry, jittery, distorted, ugly"
BEAR = "a lone grizzly bear walks through a misty forest at dawn, sunlight catching its fur."


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models are bound by per-op overhead; a second thread only adds synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def expected(case):
    from safetensors.torch import load_file

    return load_file(os.path.join(GOLDEN_URSA, case, "expected.safetensors"))


def as_image(frames_uint8):
    return frames_uint8.float().div(255)


def assert_frames(image, frames_uint8):
    """A node IMAGE equals official uint8 frames within one level."""
    assert image.dtype == torch.float32 and image.shape == frames_uint8.shape
    assert (image.mul(255).round() - frames_uint8.float()).abs().max().item() <= 1


@pytest.fixture(scope="module")
def ursa(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    (base / "ursa").mkdir()
    os.symlink(os.path.join(GOLDEN_URSA, "t2v_tiny"), base / "ursa" / "ursa-tiny-video")
    os.symlink(os.path.join(GOLDEN_URSA, "t2i_tiny"), base / "ursa" / "ursa-tiny-image")
    os.symlink(os.path.join(ROOT, "tests", "golden", "t2v_tiny"), base / "ursa" / "nova-in-the-wrong-folder")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NOVA_MODELS_DIR", str(base))
        video = UrsaCheckpointLoader.execute("ursa-tiny-video", "fp32")[0]
        image = UrsaCheckpointLoader.execute("ursa-tiny-image", "fp32")[0]
        yield {"video": video, "image": image}


def generate(model, **kwargs):
    args = dict(
        prompt=BEAR,
        negative_prompt=NEGATIVE,
        motion=9.0,
        width=48,
        height=32,
        frames=9,
        steps=12,
        guidance=7.0,
        guidance_trunc=0.9,
        seed=0,
    )
    args.update(kwargs)
    return UrsaGenerate.execute(model, **args)[0]


def test_nodes_are_registered():
    ids = {node.define_schema().node_id for node in NODES}
    assert {"URSACheckpointLoader", "URSAGenerate"} <= ids


def test_text_to_video_is_the_official_clip(ursa):
    frames = generate(ursa["video"])  # the official run "t2v": prompt "motion=9.0, ..." (the node's prefix)
    assert_frames(frames, expected("t2v_tiny")["t2v.frames"][0])


def test_image_to_video_is_the_official_clip(ursa):
    golden = expected("t2v_tiny")
    frames = generate(
        ursa["video"], image=as_image(golden["i2v.image"])[None], steps=6, guidance=5.0, guidance_trunc=0.4, seed=1
    )
    assert_frames(frames, golden["i2v.frames"][0])


def test_video_extension_continues_the_clip(ursa):
    """The official extension: condition on the last 5 frames, output the clip then the new frames."""
    golden = expected("t2v_tiny")
    clip = as_image(golden["t2v.frames"][0])
    frames = generate(ursa["video"], video=clip, num_cond_frames=5, cond_noise_scale=0.1, motion=5.0, steps=6, seed=2)
    assert frames.shape == (9 + 4, 32, 48, 3)
    assert torch.equal(frames[:9], clip)
    assert_frames(frames[9:], golden["v2v.frames"][0][5:])


def test_text_to_image_on_the_image_checkpoint(ursa):
    frames = generate(
        ursa["image"],
        prompt="The bear, calm and still, gazes upward as if lost in contemplation of the cosmos.",
        width=64,
        height=48,
        frames=1,
        steps=8,
        seed=1,
    )
    assert_frames(frames, expected("t2i_tiny")["t2i_seed1.frames"])
    with pytest.raises(InputError, match="image checkpoint .*set frames to 1"):
        generate(ursa["image"], width=64, height=48, frames=5)


def test_progress_every_step_and_cancel(ursa):
    class Cancelled(Exception):
        pass

    host, ticks = ursa["video"].host, []

    def cancel_at_second(value, total):
        ticks.append((value, total))
        if value == 2:
            raise Cancelled

    host.on_progress = cancel_at_second
    try:
        with pytest.raises(Cancelled):
            generate(ursa["video"], steps=4)
    finally:
        host.on_progress = None
    assert ticks == [(1, 4), (2, 4)]
    first, again = generate(ursa["video"], steps=2), generate(ursa["video"], steps=2)
    assert torch.equal(first, again)


def test_bad_inputs(ursa):
    with pytest.raises(InputError, match="num_frames = 6"):
        generate(ursa["video"], frames=6)
    with pytest.raises(InputError, match="image is 64x32"):
        generate(ursa["video"], image=torch.rand(1, 32, 64, 3))
    with pytest.raises(InputError, match="beyond the clip"):
        generate(ursa["video"], frames=5, video=torch.rand(9, 32, 48, 3), num_cond_frames=9)
    with pytest.raises(InputError, match="not both"):
        generate(ursa["video"], image=torch.rand(1, 32, 48, 3), video=torch.rand(5, 32, 48, 3))
    with pytest.raises(InputError, match="seed"):
        generate(ursa["video"], seed=-1)


def test_checkpoint_names(ursa, monkeypatch, tmp_path):
    from comfyui_nova.nodes.host import default_host
    from comfyui_nova.nodes.ursa import find_ursa_checkpoints

    found = find_ursa_checkpoints(default_host())
    assert {"ursa-tiny-video", "ursa-tiny-image"} <= set(found) and "nova-in-the-wrong-folder" not in found
    monkeypatch.setenv("NOVA_MODELS_DIR", str(tmp_path))
    with pytest.raises(CheckpointError, match="URSA-0.6B-FSQ320' is not installed.*BAAI/URSA-0.6B-FSQ320"):
        UrsaCheckpointLoader.execute("URSA-0.6B-FSQ320")
    assert "not in models/ursa" in UrsaCheckpointLoader.validate_inputs("nova-in-the-wrong-folder")
    assert UrsaCheckpointLoader.validate_inputs("URSA-1.7B-IBQ1024") is True


def test_frame_counts_are_checked_before_running():
    assert "try 45 or 49" in UrsaGenerate.validate_inputs(frames=48)
    assert "num_cond_frames = 12" in UrsaGenerate.validate_inputs(num_cond_frames=12)
    assert UrsaGenerate.validate_inputs(frames=49, num_cond_frames=13) is True


def test_memory_estimate_grows_with_the_clip(ursa):
    from comfyui_nova.nodes.ursa import sampling_memory

    one = sampling_memory(ursa["video"], 9, 32, 48, 7.0)
    assert one == 4 * 2 * (3 * 4 * 6) * 512 * 4  # 72 tokens, 512 codes, cond + uncond
    assert sampling_memory(ursa["video"], 9, 32, 48, 1.0) == one // 2
    assert sampling_memory(ursa["video"], 17, 32, 48, 7.0) == one * 5 // 3


def test_previews_show_the_tokens(ursa):
    from comfyui_nova.nodes.ursa import token_preview

    ids = torch.tensor([[[[0, 7], [63, 511]]]])  # FSQ digits (0,0,0), (7,0,0), (7,7,0), (7,7,7)
    image = np.asarray(token_preview(ursa["video"], ids))
    assert image.shape[2] == 3 and image.shape[0] == image.shape[1] == 2 * (256 // 2)
    corners = [tuple(image[y, x]) for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1))]
    assert corners == [(0, 0, 0), (255, 0, 0), (255, 255, 0), (255, 255, 255)]
    assert token_preview(ursa["image"], torch.randint(0, 256, (1, 1, 6, 8))).size == (8 * 32, 6 * 32)
    host, bars = ursa["video"].host, []
    real_progress = host.progress
    host.progress = lambda total: bars.append(real_progress(total)) or bars[-1]
    try:
        generate(ursa["video"], steps=2)
    finally:
        del host.progress
    assert bars[0].value == 2 and bars[0].last_preview.size == (6 * 42, 4 * 42)  # 4 x 6 tokens, 42 px each
