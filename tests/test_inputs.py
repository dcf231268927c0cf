"""Bad generation inputs get clear errors; edge behaviours (truncation, cropping, prefill) hold."""

import logging

import numpy as np
import pytest
import torch

from nova.errors import InputError, NumericalError
from nova.io.frames import frames_for_latents, latents_for_frames
from nova.io.images import fit_image
from nova.sampling.sampler import SamplerSettings, mask_schedule

FAST = dict(num_inference_steps=4, num_diffusion_steps=2, output_type="latent")


def test_overlong_prompt_is_truncated_and_reported(tiny_video_pipe, caplog):
    pipe = tiny_video_pipe
    long_prompt = " ".join(["a red fox runs through snow"] * 40)
    with caplog.at_level(logging.WARNING, logger="nova"):
        embeds = pipe.encode_prompt([long_prompt, "a fox"])
    assert embeds.truncated == [True, False]
    assert embeds.lengths[0] == pipe.config.text_token_len
    assert "truncated" in caplog.text


@pytest.mark.parametrize("shape", [(64, 96, 3), (120, 90, 3), (30, 200, 4)])
def test_i2v_image_of_any_size_is_cropped_and_resized(tiny_video_pipe, shape):
    image = np.random.RandomState(0).randint(0, 255, size=shape, dtype=np.uint8)
    out = tiny_video_pipe("a fox", image=image, max_latent_length=2, generator=torch.Generator().manual_seed(0), **FAST)
    assert out.frames.shape == (1, 4, 2, 8, 12)


def test_fit_image_center_crops():
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 100:200] = 255  # the centre third
    fitted = fit_image(image, 100, 100)
    assert fitted.shape == (100, 100, 3) and fitted.min() == 255


@pytest.mark.parametrize(
    "bad", [np.zeros((64, 96, 2), np.uint8), np.zeros((64, 96, 5), np.uint8), np.zeros((2, 64, 96, 3), np.uint8)]
)
def test_i2v_rejects_non_rgb(tiny_video_pipe, bad):
    with pytest.raises(InputError, match=r"shape \[.*HxWx3"):
        tiny_video_pipe("a fox", image=bad, max_latent_length=2, **FAST)


@pytest.mark.parametrize(
    "size, target",
    [((600, 800), (480, 768)), ((1080, 1920), (480, 768)), ((300, 200), (480, 768)), ((97, 131), (64, 96))],
)
def test_files_and_image_tensors_are_fitted_by_one_rule(size, target):
    """The CLI fits a file with PIL (uint8, as the official demo); the nodes fit an IMAGE tensor with
    torch (float). Same crop box, same antialiased bilinear filter: they agree to one level of 255
    (PIL's integer arithmetic; the exact difference stays under 1.01), and a wrong crop or filter
    would differ by tens of levels on this noise."""
    from nova.io.pixels import fit_frames

    (height, width), (th, tw) = size, target
    image = np.random.default_rng(sum(size)).integers(0, 256, (height, width, 3), dtype=np.uint8)
    from_file = fit_image(image, th, tw).astype(np.int16)
    from_tensor = fit_frames(torch.from_numpy(image).float().div(255)[None], tw, th, "crop")[0]
    from_tensor = from_tensor.movedim(0, -1).add(1).mul(127.5).round().to(torch.int16).numpy()
    assert np.abs(from_file - from_tensor).max() <= 1


def test_fit_image_strict_size():
    with pytest.raises(InputError, match="needs exactly 96x64"):
        fit_image(np.zeros((10, 10, 3), np.uint8), 64, 96, resize=False)


@pytest.mark.parametrize("frames", [0, 2, 10, 32, -3])
def test_invalid_frame_counts(frames):
    with pytest.raises(InputError, match="1 \\+ 4k"):
        latents_for_frames(frames)


def test_frame_arithmetic():
    assert [latents_for_frames(f) for f in (1, 5, 9, 33)] == [1, 2, 3, 9]
    assert [frames_for_latents(n) for n in (1, 2, 3, 9)] == [1, 5, 9, 33]


@pytest.mark.parametrize("length", [0, -1, 1.5])
def test_invalid_latent_length(tiny_video_pipe, length):
    with pytest.raises(InputError, match="max_latent_length"):
        tiny_video_pipe("a fox", max_latent_length=length, **FAST)


def test_image_model_generates_one_frame(tiny_image):
    from nova import NovaPipeline

    pipe = NovaPipeline.from_pretrained(tiny_image, device="cpu")
    with pytest.raises(InputError, match="image checkpoint"):
        pipe("a fox", max_latent_length=3, **FAST)
    images = pipe(
        "a fox", num_images_per_prompt=2, num_inference_steps=4, num_diffusion_steps=2, output_type="np"
    ).images
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(num_diffusion_steps=2000), "num_diffusion_steps"),
        (dict(guidance_scale=float("nan")), "guidance_scale"),
        (dict(guidance_renorm=1.5), "guidance_renorm"),
        (dict(flow_shift=-1.0), "flow_shift"),
    ],
)
def test_invalid_sampler_settings(kwargs, match):
    with pytest.raises(InputError, match=match):
        SamplerSettings(**kwargs)


def test_flow_shift_rejected_for_ddpm(tiny_video_pipe):
    with pytest.raises(InputError, match="flow-matching"):
        tiny_video_pipe("a fox", flow_shift=3.0, **FAST)


def test_output_type_checked(tiny_video_pipe):
    with pytest.raises(InputError, match="output_type"):
        tiny_video_pipe("a fox", output_type="gif")


def test_mask_schedule_matches_official_counts():
    counts = mask_schedule(64, 1440)
    assert sum(counts) == 1440 and len(counts) == 63 and counts[:3] == [2, 2, 3]
    assert sum(mask_schedule(128, 1440)) == 1440 and len(mask_schedule(128, 1440)) == 126
    assert mask_schedule(64, 4096)[:3] == [1, 4, 6] and len(mask_schedule(64, 4096)) == 64


def test_prefilled_latents_are_kept_exactly(tiny_video_pipe):
    gen = torch.Generator().manual_seed(1)
    prefix = torch.randn(1, 4, 2, 8, 12, generator=gen)
    out = tiny_video_pipe(
        "a fox", latents=prefix, max_latent_length=4, generator=torch.Generator().manual_seed(0), **FAST
    ).frames
    assert out.shape == (1, 4, 4, 8, 12)
    assert torch.equal(out[:, :, :2], prefix)
    with pytest.raises(InputError, match="prefilled latents have shape"):
        tiny_video_pipe("a fox", latents=torch.zeros(1, 4, 2, 8, 8), max_latent_length=3, **FAST)


def test_same_seed_same_output(tiny_video_pipe):
    a = tiny_video_pipe("a fox", max_latent_length=2, generator=torch.Generator().manual_seed(3), **FAST).frames
    b = tiny_video_pipe("a fox", max_latent_length=2, generator=torch.Generator().manual_seed(3), **FAST).frames
    c = tiny_video_pipe("a fox", max_latent_length=2, generator=torch.Generator().manual_seed(4), **FAST).frames
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_fp16_overflow_is_reported(tiny_video):
    from nova import NovaPipeline

    pipe = NovaPipeline.from_pretrained(tiny_video, device="cpu", torch_dtype=torch.float16, vae_dtype=torch.float32)
    pipe.transformer.image_decoder.head.weight.mul_(6e4)  # force an overflow
    with pytest.raises(NumericalError, match="bf16"):
        pipe("a fox", max_latent_length=1, **FAST)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_close_to_fp32(tiny_video, dtype):
    from nova import NovaPipeline

    ref = NovaPipeline.from_pretrained(tiny_video, device="cpu")
    half = NovaPipeline.from_pretrained(tiny_video, device="cpu", torch_dtype=dtype)
    kw = dict(
        max_latent_length=1, num_inference_steps=4, num_diffusion_steps=2, guidance_scale=1.0, output_type="latent"
    )
    a = ref("a fox", generator=torch.Generator().manual_seed(0), **kw).frames
    b = half("a fox", generator=torch.Generator().manual_seed(0), **kw).frames
    assert b.dtype == torch.float32 and torch.isfinite(b).all()
    assert float((a - b).abs().mean() / a.std()) < 0.1
