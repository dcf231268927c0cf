"""Node schemas are pinned (ids, types, defaults: saved workflows depend on them), and the
mistakes a user can make in the UI get clear errors."""

import os

import pytest
import torch
from pack import load_pack

load_pack()
from comfyui_nova.nodes import NODES  # noqa: E402
from comfyui_nova.nodes.loaders import NovaCheckpointLoader, NovaTextEncoderLoader, NovaVAELoader  # noqa: E402
from comfyui_nova.nodes.sampling import NovaARFrameStep, NovaGenerate, NovaSetSampler  # noqa: E402
from comfyui_nova.nodes.speed import NovaSpeedMode  # noqa: E402
from comfyui_nova.nodes.text import NovaTextEncode  # noqa: E402
from comfyui_nova.nodes.vae import NovaVAEDecode, NovaVAEEncode  # noqa: E402
from comfyui_nova.nova.errors import CheckpointError, InputError  # noqa: E402

# node id -> [(input, type, default, min, max, optional)], [output types]
MASK_INPUTS = [("mask_threshold", "FLOAT", 0.5, 0.0, 0.99, True), ("mask_grow", "INT", 0, 0, 64, True)]
DENOISE_INPUT = ("denoise", "FLOAT", 1.0, 0.0, 1.0, True)
KEYFRAMES_INPUT = ("keyframes", "NOVA_KEYFRAMES", None, None, None, True)
PINNED = {
    "NOVACheckpointLoader": (
        [
            ("ckpt_name", "COMBO", "nova-d48w1024-osp480", None, None, False),
            ("dtype", "COMBO", "auto", None, None, False),
            ("download", "BOOLEAN", False, None, None, False),
        ],
        ["NOVA_MODEL"],
    ),
    "NOVATextEncoderLoader": (
        [
            ("text_encoder_name", "COMBO", "nova-d48w1024-osp480", None, None, False),
            ("dtype", "COMBO", "auto", None, None, False),
            ("download", "BOOLEAN", False, None, None, False),
        ],
        ["NOVA_TEXT_ENCODER"],
    ),
    "NOVAVAELoader": (
        [
            ("vae_name", "COMBO", "nova-d48w1024-osp480", None, None, False),
            ("dtype", "COMBO", "fp32", None, None, False),
            ("download", "BOOLEAN", False, None, None, False),
        ],
        ["NOVA_VAE"],
    ),
    "NOVATextEncode": (
        [("text_encoder", "NOVA_TEXT_ENCODER", None, None, None, False), ("text", "STRING", "", None, None, False)],
        ["CONDITIONING"],
    ),
    "NOVASetSampler": (
        [
            ("ar_steps", "INT", 128, 1, 1024, False),
            ("diffusion_steps", "INT", 100, 1, 1000, False),
            ("cfg", "FLOAT", 7.0, 0.0, 30.0, False),
            ("guidance_trunc", "FLOAT", 0.0, 0.0, 1000.0, False),
            ("guidance_renorm", "FLOAT", 1.0, 0.01, 1.0, False),
            ("image_guidance", "FLOAT", 0.0, 0.0, 30.0, False),
            ("flow_shift", "FLOAT", 0.0, 0.0, 100.0, False),
        ],
        ["NOVA_SAMPLER"],
    ),
    "NOVAARFrameStep": (
        [
            ("model", "NOVA_MODEL", None, None, None, False),
            ("positive", "CONDITIONING", None, None, None, False),
            ("sampler", "NOVA_SAMPLER", None, None, None, False),
            ("latent_frames", "INT", 9, 0, 256, False),
            ("seed", "INT", 0, 0, 0xFFFFFFFF, False),
            ("motion_flow", "FLOAT", 5.0, 0.0, 20.0, False),
            ("fps", "FLOAT", 12.0, 1.0, 120.0, False),
            ("negative", "CONDITIONING", None, None, None, True),
            ("latents", "LATENT", None, None, None, True),
            *MASK_INPUTS,
            DENOISE_INPUT,
            KEYFRAMES_INPUT,
        ],
        ["LATENT"],
    ),
    "NOVAGenerate": (
        [
            ("model", "NOVA_MODEL", None, None, None, False),
            ("vae", "NOVA_VAE", None, None, None, False),
            ("positive", "CONDITIONING", None, None, None, False),
            ("sampler", "NOVA_SAMPLER", None, None, None, False),
            ("frames", "INT", 33, 1, 1021, False),
            ("seed", "INT", 0, 0, 0xFFFFFFFF, False),
            ("motion_flow", "FLOAT", 5.0, 0.0, 20.0, False),
            ("fps", "FLOAT", 12.0, 1.0, 120.0, False),
            ("negative", "CONDITIONING", None, None, None, True),
            ("start_image", "IMAGE", None, None, None, True),
            ("mask", "MASK", None, None, None, True),
            *MASK_INPUTS,
            ("feather", "INT", 0, 0, 256, True),
            DENOISE_INPUT,
            KEYFRAMES_INPUT,
        ],
        ["IMAGE", "FLOAT", "LATENT"],
    ),
    "NOVAKeyframes": (
        [
            ("vae", "NOVA_VAE", None, None, None, False),
            ("images", "IMAGE", None, None, None, False),
            ("frames", "STRING", "-1", None, None, False),
            ("approach", "INT", 2, 0, 64, False),
            ("strength", "FLOAT", 0.5, 0.0, 1.0, False),
            ("width", "INT", 768, 64, 4096, False),
            ("height", "INT", 480, 64, 4096, False),
            ("resize", "COMBO", "crop", None, None, False),
            ("previous", "NOVA_KEYFRAMES", None, None, None, True),
        ],
        ["NOVA_KEYFRAMES"],
    ),
    "NOVAVAEEncode": (
        [
            ("vae", "NOVA_VAE", None, None, None, False),
            ("image", "IMAGE", None, None, None, False),
            ("width", "INT", 768, 64, 4096, False),
            ("height", "INT", 480, 64, 4096, False),
            ("resize", "COMBO", "crop", None, None, False),
        ],
        ["LATENT"],
    ),
    "NOVASegment": (
        [
            ("positive", "CONDITIONING", None, None, None, False),
            ("latent_frames", "INT", 30, 1, 256, False),
            ("motion_flow", "FLOAT", 5.0, 0.0, 20.0, False),
            ("fps", "FLOAT", 12.0, 1.0, 120.0, False),
            ("negative", "CONDITIONING", None, None, None, True),
            ("previous", "NOVA_SEGMENTS", None, None, None, True),
        ],
        ["NOVA_SEGMENTS"],
    ),
    "NOVALongVideo": (
        [
            ("model", "NOVA_MODEL", None, None, None, False),
            ("sampler", "NOVA_SAMPLER", None, None, None, False),
            ("segments", "NOVA_SEGMENTS", None, None, None, False),
            ("seed", "INT", 0, 0, 0xFFFFFFFF, False),
            ("window", "INT", 9, 0, 256, False),
            ("blend_frames", "INT", 0, 0, 64, False),
            ("loop_frames", "INT", 0, 0, 64, False),
            ("latents", "LATENT", None, None, None, True),
            *MASK_INPUTS,
            DENOISE_INPUT,
            KEYFRAMES_INPUT,
        ],
        ["LATENT"],
    ),
    "NOVAOutpaintCanvas": (
        [
            ("image", "IMAGE", None, None, None, False),
            ("width", "INT", 768, 64, 4096, False),
            ("height", "INT", 480, 64, 4096, False),
            ("zoom", "FLOAT", 1.0, 0.05, 1.0, False),
            ("x", "FLOAT", 0.5, 0.0, 1.0, False),
            ("y", "FLOAT", 0.5, 0.0, 1.0, False),
            ("fill", "COMBO", "edge", None, None, False),
        ],
        ["IMAGE", "MASK"],
    ),
    "NOVASpeedMode": (
        [
            ("model", "NOVA_MODEL", None, None, None, False),
            ("attention", "COMBO", "auto", None, None, False),
            ("fp8_matmuls", "BOOLEAN", False, None, None, False),
            ("compile", "BOOLEAN", False, None, None, False),
        ],
        ["NOVA_MODEL"],
    ),
    "URSACheckpointLoader": (
        [
            ("ckpt_name", "COMBO", "URSA-1.7B-FSQ320", None, None, False),
            ("dtype", "COMBO", "auto", None, None, False),
            ("download", "BOOLEAN", False, None, None, False),
        ],
        ["URSA_MODEL"],
    ),
    "URSAGenerate": (
        [
            ("model", "URSA_MODEL", None, None, None, False),
            ("prompt", "STRING", "", None, None, False),
            (
                "negative_prompt",
                "STRING",
                "worst quality, low quality, inconsistent motion, static, still, blurry, jittery, distorted, ugly",
                None,
                None,
                False,
            ),
            ("motion", "FLOAT", 9.0, 0.0, 20.0, False),
            ("width", "INT", 512, 8, 4096, False),
            ("height", "INT", 320, 8, 4096, False),
            ("frames", "INT", 49, 1, 1025, False),
            ("steps", "INT", 25, 1, 500, False),
            ("guidance", "FLOAT", 7.0, 0.0, 30.0, False),
            ("guidance_trunc", "FLOAT", 0.9, 0.0, 1.0, False),
            ("seed", "INT", 0, 0, 0xFFFFFFFF, False),
            ("image", "IMAGE", None, None, None, True),
            ("video", "IMAGE", None, None, None, True),
            ("num_cond_frames", "INT", 13, 1, 1025, True),
            ("cond_noise_scale", "FLOAT", 0.0, 0.0, 1.0, True),
        ],
        ["IMAGE"],
    ),
    "NOVAVAEDecode": (
        [
            ("vae", "NOVA_VAE", None, None, None, False),
            ("latents", "LATENT", None, None, None, False),
            ("fps", "FLOAT", 12.0, 1.0, 120.0, False),
            ("tile_latents", "INT", 5, 2, 64, False),
            ("source", "IMAGE", None, None, None, True),
            ("feather", "INT", 0, 0, 256, True),
        ],
        ["IMAGE", "FLOAT"],
    ),
}


def _describe(node):
    schema = node.define_schema()
    inputs = [
        (
            i.id,
            str(i.get_io_type()),
            getattr(i, "default", None),
            getattr(i, "min", None),
            getattr(i, "max", None),
            bool(i.optional),
        )
        for i in schema.inputs
    ]
    return schema.node_id, inputs, [str(o.get_io_type()) for o in schema.outputs], schema


def test_schemas_are_pinned():
    seen = {}
    for node in NODES:
        node_id, inputs, outputs, schema = _describe(node)
        seen[node_id] = (inputs, outputs)
        assert node_id.startswith(("NOVA", "URSA")) and schema.category.startswith("NOVA") and schema.display_name
        assert schema.description
        for i in schema.inputs:  # every input is explained in the UI
            assert i.tooltip or str(i.get_io_type()) in (
                "NOVA_MODEL",
                "NOVA_VAE",
                "NOVA_SAMPLER",
                "NOVA_TEXT_ENCODER",
                "NOVA_SEGMENTS",
                "CONDITIONING",
                "LATENT",
                "URSA_MODEL",
            )
    assert seen == PINNED


def test_feather_is_described_by_the_regenerated_tokens():
    """The feather's exact region is the regenerated tokens (16-px cells, after mask_grow), not the pixel mask."""
    from pack import ROOT

    for node in (NovaGenerate, NovaVAEDecode):
        schema = node.define_schema()
        tip = next(i for i in schema.inputs if i.id == "feather").tooltip
        assert "regenerated tokens" in tip and "mask_grow" in tip and "outside the mask" not in tip
        for page in (f"{schema.node_id}.md", f"{schema.node_id}/zh.md"):
            text = open(os.path.join(ROOT, "web", "docs", page), encoding="utf-8").read()
            row = next(line for line in text.splitlines() if line.startswith("| `feather`"))
            assert "mask_grow" in row and "outside the mask" not in row


def test_seed_widgets_control_after_generate():
    for node in (NovaARFrameStep, NovaGenerate):
        seed = next(i for i in node.define_schema().inputs if i.id == "seed")
        assert seed.control_after_generate


def test_import_is_cheap_and_v3_only():
    import subprocess
    import sys

    from pack import ROOT

    code = (
        "import importlib.util, sys;"
        f"spec = importlib.util.spec_from_file_location('pk', {os.path.join(ROOT, '__init__.py')!r}, "
        f"submodule_search_locations=[{ROOT!r}]);"
        "m = importlib.util.module_from_spec(spec); sys.modules['pk'] = m; spec.loader.exec_module(m);"
        "print('torch' in sys.modules, hasattr(m, 'NODE_CLASS_MAPPINGS'), hasattr(m, 'comfy_entrypoint'), "
        "m.WEB_DIRECTORY)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True", "./web"]


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, tiny_video, tiny_image):
    base = tmp_path_factory.mktemp("models")
    (base / "nova").mkdir()
    os.symlink(tiny_video, base / "nova" / "nova-tiny-video")
    os.symlink(tiny_image, base / "nova" / "nova-tiny-image")
    with pytest.MonkeyPatch.context() as mp:  # the fallback host finds its model folders here
        mp.setenv("NOVA_MODELS_DIR", str(base))
        model = NovaCheckpointLoader.execute("nova-tiny-video")[0]
        te = NovaTextEncoderLoader.execute("nova-tiny-video")[0]
        vae = NovaVAELoader.execute("nova-tiny-video")[0]
        yield {
            "host": model.host,
            "model": model,
            "te": te,
            "vae": vae,
            "cond": NovaTextEncode.execute(te, "a fox")[0],
            "sampler": NovaSetSampler.execute(4, 2, 5.0)[0],
        }


def test_missing_official_checkpoint_explains_where(comfy):
    with pytest.raises(CheckpointError) as err:
        NovaCheckpointLoader.execute("nova-d48w1024-osp480")
    msg = str(err.value)
    assert "BAAI/nova-d48w1024-osp480" in msg and "download" in msg and "transformer/" in msg


def test_unknown_dropdown_value(comfy):
    assert isinstance(NovaCheckpointLoader.validate_inputs("no-such-model"), str)
    assert NovaCheckpointLoader.validate_inputs("nova-tiny-video") is True
    with pytest.raises(CheckpointError, match="not found"):
        NovaCheckpointLoader.execute("no-such-model")


def test_wrong_image_size_is_cropped_or_refused(comfy):
    image = torch.rand(1, 100, 300, 3)
    latent = NovaVAEEncode.execute(comfy["vae"], image, 96, 64, "crop")[0]
    assert latent["samples"].shape == (1, 4, 1, 8, 12)
    with pytest.raises(InputError, match="needs 96x64"):
        NovaVAEEncode.execute(comfy["vae"], image, 96, 64, "none")
    # Latents of another size do not fit the checkpoint: a clear error, not a crash deep inside.
    wrong = NovaVAEEncode.execute(comfy["vae"], image, 128, 64, "crop")[0]
    with pytest.raises(InputError, match="do not fit checkpoint 'nova-tiny-video'"):
        NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 2, 0, 5.0, 12.0, latents=wrong)


def test_latents_from_another_checkpoint(comfy):
    other = {"samples": torch.zeros(1, 4, 1, 8, 8)}  # what the 64x64 image checkpoint makes
    with pytest.raises(InputError, match="another checkpoint"):
        NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 2, 0, 5.0, 12.0, latents=other)


def test_conditioning_from_another_text_encoder(comfy):
    clip_cond = [[torch.zeros(1, 77, 768), {"pooled_output": torch.zeros(1, 768)}]]
    with pytest.raises(InputError, match="NOVA Text Encode"):
        NovaARFrameStep.execute(comfy["model"], clip_cond, comfy["sampler"], 1, 0, 5.0, 12.0)


def test_image_checkpoint_makes_one_frame(comfy):
    model = NovaCheckpointLoader.execute("nova-tiny-image")[0]
    te = NovaTextEncoderLoader.execute("nova-tiny-image")[0]
    cond = NovaTextEncode.execute(te, "a fox")[0]
    with pytest.raises(InputError, match="exactly one frame"):
        NovaARFrameStep.execute(model, cond, comfy["sampler"], 3, 0, 5.0, 12.0)


def test_cancel_then_next_run_succeeds(comfy):
    class Cancelled(Exception):
        pass

    calls = []

    def cancel_at_third(value, total):
        calls.append(value)
        if value == 3:
            raise Cancelled

    comfy["host"].on_progress = cancel_at_third
    try:
        with pytest.raises(Cancelled):
            NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 3, 0, 5.0, 12.0)
    finally:
        comfy["host"].on_progress = None
    assert calls == [1, 2, 3]  # stopped within one set step
    first = NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 3, 0, 5.0, 12.0)[0]
    again = NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 3, 0, 5.0, 12.0)[0]
    assert torch.equal(first["samples"], again["samples"])


def test_progress_ticks_every_set_step(comfy):
    ticks = []
    comfy["host"].on_progress = lambda value, total: ticks.append((value, total))
    try:
        NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 2, 0, 5.0, 12.0)
    finally:
        comfy["host"].on_progress = None
    steps = 4  # 4 AR steps over 24 tokens: none empty
    assert ticks == [(i, 2 * steps) for i in range(1, 2 * steps + 1)]


def test_chain_continues_without_touching_inputs(comfy):
    first = NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 2, 0, 5.0, 12.0)[0]
    snapshot = first["samples"].clone()
    cond_snapshot = comfy["cond"][0][0].clone()
    second = NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 2, 1, 5.0, 12.0, latents=first)[0]
    assert torch.equal(first["samples"], snapshot) and torch.equal(comfy["cond"][0][0], cond_snapshot)
    assert second["samples"].shape == (1, 4, 4, 8, 12)
    assert torch.equal(second["samples"][:, :, :2], first["samples"])


def test_generate_refuses_fewer_frames_than_start_image(comfy):
    clip = torch.rand(9, 64, 96, 3)
    mask = torch.ones(1, 64, 96)
    with pytest.raises(
        InputError,
        match=r"frames makes 2 latent frame\(s\), fewer than the 3 of start_image; raise "
        "frames",
    ):
        NovaGenerate.execute(
            comfy["model"], comfy["vae"], comfy["cond"], comfy["sampler"], 5, 5, 5.0, 12.0, start_image=clip, mask=mask
        )


def test_generate_equals_the_chain(comfy):
    frames, fps, latent = NovaGenerate.execute(
        comfy["model"], comfy["vae"], comfy["cond"], comfy["sampler"], 9, 5, 5.0, 12.0
    )
    chain = NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 3, 5, 5.0, 12.0)[0]
    decoded, dec_fps = NovaVAEDecode.execute(comfy["vae"], chain)
    assert torch.equal(latent["samples"], chain["samples"]) and torch.equal(frames, decoded)
    assert fps == dec_fps == 12.0 and frames.shape == (9, 64, 96, 3)
    # image-to-video: Generate(start_image) == VAE Encode -> AR step
    image = frames[:1]
    f2, _, l2 = NovaGenerate.execute(
        comfy["model"], comfy["vae"], comfy["cond"], comfy["sampler"], 9, 5, 5.0, 12.0, start_image=image
    )
    enc = NovaVAEEncode.execute(comfy["vae"], image, 96, 64, "crop")[0]
    c2 = NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 2, 5, 5.0, 12.0, latents=enc)[0]
    assert torch.equal(l2["samples"], c2["samples"])


def test_speed_mode_node(comfy):
    """Deprecated (no mode was faster on a GPU): hidden, its defaults pass the model through, any
    other value is refused naming the measurement; the input handle stays untouched."""
    model = comfy["model"]
    assert NovaSpeedMode.define_schema().is_deprecated
    same = NovaSpeedMode.execute(model, "auto", False, False)[0]
    assert same.patcher is model.patcher and model.accel is None
    for args in (("math", False, False), ("auto", True, False), ("auto", False, True), ("sage", False, False)):
        with pytest.raises(InputError, match=r"is not offered: measured on a GPU .*gpu-check-h200.md"):
            NovaSpeedMode.execute(model, *args)
    with pytest.raises(InputError, match="connect NOVA Checkpoint Loader"):
        NovaSpeedMode.execute("not a model", "auto", False)


def test_samplers_honour_an_engine_speed_mode(comfy):
    """A mode set on the handle through the engine (bench/gpu_check.py measures them this way) reaches
    AR Frame Step and Long Video alike."""
    import dataclasses

    from nova.sampling.fast import Accel

    model = comfy["model"]
    run = lambda m: NovaARFrameStep.execute(m, comfy["cond"], comfy["sampler"], 2, 3, 5.0, 12.0)[0]["samples"]  # noqa: E731
    base = run(model)
    fp8 = dataclasses.replace(model, accel=Accel(fp8_matmuls=True))
    assert float((run(fp8) - base).abs().mean() / base.std()) > 1e-3
    from comfyui_nova.nodes.long_video import NovaLongVideo, NovaSegment

    long = NovaLongVideo.execute(fp8, comfy["sampler"], NovaSegment.execute(comfy["cond"], 2, 5.0, 12.0)[0], 3, 0)[0][
        "samples"
    ]
    torch.testing.assert_close(long, run(fp8))


def test_sampler_settings_are_validated():
    with pytest.raises(InputError, match="guidance_renorm"):
        NovaSetSampler.execute(4, 2, 5.0, 0.0, 0.0, 0.0, 0.0)


def test_long_video_node_extends_with_a_window(comfy):
    from comfyui_nova.nodes.long_video import NovaLongVideo, NovaSegment

    cond2 = NovaTextEncode.execute(comfy["te"], "waves on a beach")[0]
    segs = NovaSegment.execute(comfy["cond"], 2, 5.0, 12.0)[0]
    segs = NovaSegment.execute(cond2, 2, 8.0, 12.0, previous=segs)[0]
    start = NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 2, 0, 5.0, 12.0)[0]
    out = NovaLongVideo.execute(
        comfy["model"], comfy["sampler"], segs, 0, window=3, blend_frames=1, loop_frames=1, latents=start
    )[0]
    assert out["samples"].shape == (1, 4, 7, 8, 12)
    assert torch.equal(out["samples"][:, :, :2], start["samples"])
    with pytest.raises(InputError, match="segments are empty"):
        NovaLongVideo.execute(comfy["model"], comfy["sampler"], (), 0)


def test_text_encoder_in_fp8(comfy):
    te8 = NovaTextEncoderLoader.execute("nova-tiny-video", "fp8_e4m3fn")[0]
    from comfyui_nova.nova.speed.fp8 import Fp8Linear

    assert any(isinstance(m, Fp8Linear) for m in te8.patcher.model.modules())
    a = NovaTextEncode.execute(comfy["te"], "a red fox runs through snow")[0][0][0].float()
    b = NovaTextEncode.execute(te8, "a red fox runs through snow")[0][0][0].float()
    n = 5  # compare the prompt's tokens
    cos = torch.nn.functional.cosine_similarity(a[0, :n], b[0, :n], dim=-1)
    assert float(cos.min()) > 0.98


# -- issue 11: bad inputs in the UI -------------------------------------------------------------
def test_conditioning_batch_must_match_its_lengths(comfy):
    feats = comfy["cond"][0][0]
    two_rows = [[torch.cat([feats, feats]), dict(comfy["cond"][0][1])]]  # batch 2, one length
    with pytest.raises(InputError, match="batch of 2 prompts but 1 nova_lengths"):
        NovaARFrameStep.execute(comfy["model"], two_rows, comfy["sampler"], 1, 0, 5.0, 12.0)


def test_latents_of_another_vae_are_refused_and_unmarked_ones_pass(comfy):
    image_vae = NovaVAELoader.execute("nova-tiny-image")[0]
    # the image VAE's latents, at the video model's latent size
    latent = NovaVAEEncode.execute(image_vae, torch.rand(1, 64, 96, 3), 96, 64, "crop")[0]
    assert latent["nova_latent_format"] == image_vae.latent_space != comfy["model"].latent_space
    with pytest.raises(InputError, match="latent space of 'AutoencoderKL/4ch/x.*another VAE"):
        NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 1, 0, 5.0, 12.0, latents=latent)
    with pytest.raises(InputError, match="latent space"):
        NovaVAEDecode.execute(comfy["vae"], latent)
    unmarked = {"samples": latent["samples"]}  # a core node may drop the key: the shape check decides
    out = NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 1, 0, 5.0, 12.0, latents=unmarked)[0]
    assert out["samples"].shape == (1, 4, 2, 8, 12) and out["nova_latent_format"] == comfy["model"].latent_space


@pytest.mark.parametrize(
    "samples,tile,match",
    [
        (torch.zeros(1, 4, 0, 8, 12), 5, r"shape \[1, 4, 0, 8, 12\]; expected .*T >= 1"),
        (torch.zeros(0, 4, 2, 8, 12), 5, r"shape \[0, 4, 2, 8, 12\]; expected .*B >= 1"),
        (torch.zeros(1, 4, 2, 8, 12), 1, r"tile_latents = 1; expected an integer >= 2"),
        (torch.zeros(1, 4, 2, 8, 12, dtype=torch.long), 5, r"must be a float tensor"),
    ],
)
def test_vae_decode_bad_latents(comfy, samples, tile, match):
    with pytest.raises(InputError, match=match):
        NovaVAEDecode.execute(comfy["vae"], {"samples": samples}, 12.0, tile)


def test_vae_encode_bad_images(comfy):
    with pytest.raises(InputError, match="image has 0 frames"):
        NovaVAEEncode.execute(comfy["vae"], torch.zeros(0, 64, 96, 3), 96, 64, "crop")
    mixed = [torch.rand(1, 64, 96, 3), torch.rand(1, 40, 80, 3)]
    with pytest.raises(InputError, match=r"different sizes \(80x40, 96x64\)"):
        NovaVAEEncode.execute(comfy["vae"], mixed, 96, 64, "crop")
    same = [torch.rand(64, 96, 3), torch.rand(1, 64, 96, 3)]
    assert NovaVAEEncode.execute(comfy["vae"], same, 96, 64, "crop")[0]["samples"].shape == (1, 4, 1, 8, 12)


@pytest.mark.parametrize(
    "fps,motion,match", [(0.0, 5.0, "fps = 0.0"), (-12.0, 5.0, "fps = -12.0"), (12.0, -1.0, "motion_flow = -1.0")]
)
def test_node_fps_and_motion_are_checked(comfy, fps, motion, match):
    with pytest.raises(InputError, match=match):
        NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 1, 0, motion, fps)


def test_node_seed_range_is_what_changes_the_result(comfy):
    seed = next(i for i in NovaARFrameStep.define_schema().inputs if i.id == "seed")
    assert seed.max == 2**32 - 1 and "32 bits" in seed.tooltip
    a = NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 1, 7, 5.0, 12.0)[0]
    b = NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 1, 7 + 2**32, 5.0, 12.0)[0]
    assert torch.equal(a["samples"], b["samples"])
    with pytest.raises(InputError, match=r"seed = 18446744073709551616"):
        NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 1, 2**64, 5.0, 12.0)


def test_memory_estimate_comes_from_the_plan(comfy):
    loads = []
    host = comfy["model"].host
    original = host.load
    host.load = lambda patcher, memory_required=0: (loads.append(memory_required), original(patcher, memory_required))
    try:
        NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 2, 0, 5.0, 12.0)
    finally:
        del host.load
    from comfyui_nova.nodes.sampling import plan_frames

    plan = plan_frames(comfy["model"], comfy["cond"], None, comfy["sampler"], 2, 5.0, 12.0)
    assert loads == [plan.memory_bytes()] and plan.memory_bytes() > 0


def test_memory_estimate_counts_the_fp8_weights(comfy):
    """fp8 matmuls keep an fp8 copy of the spatial encoder's linear weights while sampling."""
    import dataclasses

    from comfyui_nova.nodes.sampling import plan_frames
    from nova.sampling.fast import Accel

    fp8 = dataclasses.replace(comfy["model"], accel=Accel(fp8_matmuls=True))
    base = plan_frames(comfy["model"], comfy["cond"], None, comfy["sampler"], 2, 5.0, 12.0).memory_bytes()
    extra = plan_frames(fp8, comfy["cond"], None, comfy["sampler"], 2, 5.0, 12.0).memory_bytes() - base
    blocks = fp8.transformer.image_encoder.blocks
    assert extra == sum(
        layer.weight.numel() for b in blocks for layer in (b.attn.qkv, b.attn.proj, b.mlp.fc1, b.mlp.fc2)
    )


@pytest.mark.parametrize(
    "latents,match",
    [
        (torch.zeros(1, 4, 2, 8, 12), "latents must be a ComfyUI LATENT \\(a dict with 'samples'\\), got Tensor"),
        (
            {"noise_mask": torch.ones(1, 64, 96)},
            "latents must be a ComfyUI LATENT \\(a dict with 'samples'\\), got dict",
        ),
    ],
)
def test_ar_step_and_long_video_name_a_latent_that_is_not_one(comfy, latents, match):
    from comfyui_nova.nodes.long_video import NovaLongVideo, NovaSegment

    with pytest.raises(InputError, match=match):
        NovaARFrameStep.execute(comfy["model"], comfy["cond"], comfy["sampler"], 1, 0, 5.0, 12.0, latents=latents)
    segs = NovaSegment.execute(comfy["cond"], 1, 5.0, 12.0)[0]
    with pytest.raises(InputError, match=match):
        NovaLongVideo.execute(comfy["model"], comfy["sampler"], segs, 0, window=3, latents=latents)


@pytest.mark.parametrize("width,height", [(0, 64), (96, 0), (-8, 64), (100, 64), (96, 10**6)])
def test_vae_encode_refuses_sizes_its_widgets_do_not_allow(comfy, width, height):
    image = torch.rand(1, 64, 96, 3)
    bad = "width" if (width, height)[0] != 96 else "height"
    with pytest.raises(
        InputError,
        match=rf"{bad} = {(width if bad == 'width' else height)}; expected a multiple of 8 "
        r"in \[64, 4096\]",
    ):
        NovaVAEEncode.execute(comfy["vae"], image, width, height, "crop")
