"""Every bad input of issue 11 gets our own error, naming the value or file and what is allowed;
nothing is silently wrong (images by their real range, fps/motion checked, NaN reported where it
arose, unimplemented official arguments not swallowed)."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from conftest import edit_json

from nova.errors import CheckpointError, ConfigError, InputError, NumericalError, WeightsError
from nova.io.images import fit_image, to_rgb8
from nova.io.media import read_frames
from nova.sampling.sampler import new_generator

FAST = dict(num_inference_steps=2, num_diffusion_steps=1, output_type="latent", disable_progress_bar=True)


# -- generation arguments -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(fps=0), r"fps = 0; expected a finite number > 0"),
        (dict(fps=-12.0), r"fps = -12.0"),
        (dict(fps=float("nan")), r"fps = nan"),
        (dict(motion_flow=-1.0), r"motion_flow = -1.0; expected a finite number >= 0"),
        (dict(motion_flow=float("inf")), r"motion_flow = inf"),
        (dict(motion_flow=[1.0, 2.0]), r"motion_flow has 2 values for 1 prompts"),
        (dict(num_inference_steps="8"), r"num_inference_steps = '8'"),
        (dict(guidance_scale="high"), r"guidance_scale = 'high'"),
        (dict(spatiotemporal_guidance_scale=-1), r"spatiotemporal_guidance_scale = -1"),
        (dict(generator=42), r"generator is a int"),
    ],
)
def test_bad_generation_arguments(tiny_video_pipe, kw, match):
    with pytest.raises(InputError, match=match):
        tiny_video_pipe("a fox", max_latent_length=2, **{**FAST, **kw})


def test_unknown_keyword_raises_type_error(tiny_video_pipe):
    with pytest.raises(TypeError, match="guidence_scale"):
        tiny_video_pipe("a fox", guidence_scale=3.0, **FAST)


def test_spatiotemporal_guidance_warns_it_has_no_effect(tiny_video_pipe, caplog):
    with caplog.at_level(logging.WARNING, logger="nova"):
        a = tiny_video_pipe("a fox", spatiotemporal_guidance_scale=2.0, generator=new_generator(0), **FAST).frames
    assert "spatiotemporal_guidance_scale = 2.0 has no effect" in caplog.text
    assert torch.equal(a, tiny_video_pipe("a fox", generator=new_generator(0), **FAST).frames)


def test_disable_progress_bar_is_honoured(tiny_video_pipe, capfd):
    tiny_video_pipe("a fox", **{**FAST, "disable_progress_bar": False})
    assert "NOVA" in capfd.readouterr().err
    tiny_video_pipe("a fox", **FAST)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    "prompt,match",
    [
        ("a fox \ud800 in snow", r"invalid character '\\ud800' at position 6"),
        (123, r"prompt is a int \(123\); expected a string"),
        (["a fox", None], r"prompt 1 is a NoneType"),
        ([], r"prompt is an empty list"),
    ],
)
def test_bad_prompts_are_input_errors(tiny_video_pipe, prompt, match):
    with pytest.raises(InputError, match=match) as err:
        tiny_video_pipe(prompt, **FAST)
    assert not isinstance(err.value, CheckpointError)


@pytest.mark.parametrize("seed", [2**64, -1, 1.5, "7"])
def test_seed_out_of_range(seed):
    with pytest.raises(InputError, match=rf"seed = {seed!r}; expected an integer in \[0, 2\*\*64 - 1\]"):
        new_generator(seed)


def test_only_32_bits_of_a_seed_matter_on_the_cpu_generator(tiny_video_pipe):
    """As in the official code (documented in the README and the node tooltip)."""
    runs = [tiny_video_pipe("a fox", generator=new_generator(s), **FAST).frames for s in (5, 5 + 2**32, 5 + 2**63, 6)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2]) and not torch.equal(runs[0], runs[3])


def test_prompt_embeds_batch_must_match_lengths():
    from nova.components.text_encoder import PromptEmbeds

    with pytest.raises(InputError, match="2 rows but 1 lengths"):
        PromptEmbeds(torch.zeros(2, 4, 8), [3], [False])


# -- images ---------------------------------------------------------------------------------------
def test_uint16_image_is_taken_by_its_range():
    ramp = np.linspace(0, 65535, 64 * 96).reshape(64, 96).astype(np.uint16)
    rgb = to_rgb8(np.stack([ramp] * 3, -1))
    assert rgb.dtype == np.uint8 and abs(float(rgb.mean()) - 127.5) < 1 and (rgb == 255).mean() < 0.01
    assert np.array_equal(to_rgb8(ramp)[..., 0], rgb[..., 0])  # grayscale works too


def test_16_bit_grayscale_png_is_not_white(tmp_path):
    from PIL import Image

    ramp = np.linspace(0, 65535, 64 * 96).reshape(64, 96).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    frame = read_frames(str(tmp_path / "g16.png"))[0]
    assert frame.shape == (64, 96, 3) and abs(float(frame.mean()) - 127.5) < 1


def test_float_images_by_their_range():
    assert to_rgb8(np.full((2, 2, 3), -1.0))[0, 0, 0] == 0
    assert to_rgb8(np.full((2, 2, 3), 1.0))[0, 0, 0] == 255
    signed = np.zeros((2, 2, 3), np.float32)
    signed[0, 0] = -1.0  # any negative value: the image is in [-1, 1], so 0 is mid-grey
    assert to_rgb8(signed)[1, 1, 0] == 128
    assert to_rgb8(np.full((2, 2, 3), 0.5))[0, 0, 0] == 128  # [0, 1]
    assert to_rgb8(np.full((2, 2, 3), 200.0))[0, 0, 0] == 200  # 0..255
    with pytest.raises(InputError, match=r"values in \[-2, 0.5\]; float images must be in"):
        to_rgb8(np.array([[[-2.0, 0.5, 0.0]]]))
    with pytest.raises(InputError, match="NaN"):
        to_rgb8(np.full((2, 2, 3), np.nan))


def test_i2v_with_a_uint16_image_matches_the_8_bit_one(tiny_video_pipe):
    img8 = np.random.RandomState(0).randint(0, 256, (64, 96, 3)).astype(np.uint8)
    img16 = img8.astype(np.uint16) * 257
    assert np.array_equal(fit_image(img16, 64, 96), img8)


# -- NaN: where it arose ---------------------------------------------------------------------------
def test_nan_in_the_inputs(tiny_video_pipe):
    with pytest.raises(InputError, match="prefilled latents contain NaN/Inf .the inputs"):
        tiny_video_pipe("a fox", latents=torch.full((1, 4, 1, 8, 12), float("nan")), max_latent_length=2, **FAST)
    embeds = torch.full((1, 5, tiny_video_pipe.config.text_token_dim), float("nan"))
    with pytest.raises(InputError, match="features contain NaN/Inf .the inputs"):
        tiny_video_pipe(prompt_embeds=embeds, **FAST)


def test_nan_in_the_text_features_and_in_fp32_sampling(tiny_video):
    from nova import NovaPipeline

    pipe = NovaPipeline.from_pretrained(tiny_video, device="cpu", load_vae=False)
    weight = pipe.transformer.text_embed.proj.weight
    saved = weight.clone()
    weight.fill_(float("inf"))
    with pytest.raises(NumericalError, match="text features of segment 0 .projected in fp32") as err:
        pipe("a fox", **FAST)
    assert "fp16" not in str(err.value)
    weight.copy_(saved)
    pipe.transformer.image_decoder.head.weight.fill_(float("nan"))
    with pytest.raises(NumericalError, match="while sampling latent frame 0 in fp32") as err:
        pipe("a fox", **FAST)
    assert "fp16 overflowed" not in str(err.value)


# -- files a user passes ---------------------------------------------------------------------------
def test_unreadable_inputs_name_the_file(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image" * 10)
    with pytest.raises(InputError, match="junk.png: not a readable image"):
        read_frames(str(junk))
    clip = tmp_path / "junk.mp4"
    clip.write_bytes(b"not a video" * 10)
    with pytest.raises(InputError, match="junk.mp4: not a readable video"):
        read_frames(str(clip))
    with pytest.raises(InputError, match="missing.mp4: no such file"):
        read_frames(str(tmp_path / "missing.mp4"))
    with pytest.raises(InputError, match="is a folder"):
        read_frames(str(tmp_path))


def test_file_without_a_video_stream(tmp_path):
    import av

    path = str(tmp_path / "sound.wav")
    with av.open(path, "w") as c:
        stream = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            c.mux(packet)
    with pytest.raises(InputError, match="sound.wav: has no video stream"):
        read_frames(path)


# -- checkpoint files ------------------------------------------------------------------------------
@pytest.fixture
def broken(tmp_path, tiny_video):
    """A fresh copy of the tiny video checkpoint to break."""
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_video, folder)
    return folder


def _load(folder):
    from nova import NovaPipeline

    return NovaPipeline.from_pretrained(str(folder), device="cpu")


@pytest.mark.parametrize(
    "component,file,changes,match",
    [
        (
            "scheduler",
            "scheduler_config.json",
            dict(num_train_timesteps="1000"),
            r"scheduler_config.json: key 'num_train_timesteps' = '1000'; expected an integer",
        ),
        ("scheduler", "scheduler_config.json", dict(beta_schedule=3), r"key 'beta_schedule' = 3; expected a string"),
        (
            "text_encoder",
            "config.json",
            dict(hidden_size="64"),
            r"text_encoder.config.json: key 'hidden_size' = '64'; expected a positive integer",
        ),
        (
            "text_encoder",
            "config.json",
            dict(layer_norm_eps="small"),
            r"key 'layer_norm_eps' = 'small'; expected a number",
        ),
        ("vae", "config.json", dict(block_out_channels="wide"), r"vae.config.json: key 'block_out_channels' = 'wide'"),
        ("vae", "config.json", dict(scaling_factor="0.18"), r"vae.config.json: key 'scaling_factor' = '0.18'"),
    ],
)
def test_config_with_wrong_types(broken, component, file, changes, match):
    edit_json(broken / component / file, **changes)
    with pytest.raises(ConfigError, match=match):
        _load(broken)


def test_config_claiming_a_huge_frame_is_refused_before_any_weight(broken, monkeypatch):
    """6400 x 9600 pixels with the real weights would load (positions are computed, not stored) and
    run out of memory or time: refused from the config, before a weight is read."""
    from nova.components import loading

    edit_json(
        broken / "transformer" / "config.json",
        image_size=[6400, 9600],
        image_base_size=[400, 600],
        video_base_size=[16, 200, 300],
    )
    monkeypatch.setattr(loading, "load_module", lambda *a, **k: pytest.fail("weights read before the size check"))
    with pytest.raises(ConfigError, match=r"image_size 9600x6400 makes 240000 image tokens per frame; at most 16384"):
        _load(broken)


def test_model_index_that_is_not_an_object(broken):
    (broken / "model_index.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"model_index.json: expected a JSON object"):
        _load(broken)


def test_weights_of_the_wrong_dtype(broken):
    from safetensors.torch import load_file, save_file

    path = broken / "transformer" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(path))
    key = sorted(state)[0]
    state[key] = state[key].to(torch.int32)
    save_file(state, str(path))
    with pytest.raises(
        WeightsError, match=rf"must be floating point.*{key} \(I32 in .*diffusion_pytorch_model.safetensors\)"
    ):
        _load(broken)


def test_tokenizer_that_fails_only_at_the_first_prompt(broken):
    path = broken / "tokenizer" / "tokenizer.json"
    data = json.loads(path.read_text())
    # Loads fine, but its vocabulary has no word and no usable unknown token: every prompt would
    # come out as no tokens at all (the null prompt) without a word of warning.
    data["model"] = {"type": "WordLevel", "vocab": {"<|endoftext|>": 0}, "unk_token": "[UNK]"}
    path.write_text(json.dumps(data))
    # (tokenizers < 0.21 raises at the probe prompt instead of returning no tokens: both are caught)
    with pytest.raises(
        CheckpointError, match=r"ckpt.tokenizer: the tokenizer (turns text into no tokens|files do not work)"
    ):
        _load(broken)


def test_tokenizer_that_raises_at_the_first_prompt(broken, monkeypatch):
    from transformers import PreTrainedTokenizerFast

    def fail(self, *args, **kwargs):
        raise Exception("WordPiece error: Missing [UNK] token from the vocabulary")

    monkeypatch.setattr(PreTrainedTokenizerFast, "__call__", fail)
    with pytest.raises(CheckpointError, match=r"ckpt.tokenizer: the tokenizer files do not work .*Missing \[UNK\]"):
        _load(broken)


# -- review 1: a clip given to an image checkpoint -------------------------------------------------
def test_image_checkpoint_refuses_a_clip_of_several_frames(tiny_image):
    from nova import NovaPipeline
    from nova.sampling.masks import masked_prefix

    pipe = NovaPipeline.from_pretrained(tiny_image, device="cpu")
    clip = [np.full((64, 64, 3), 40 * t, np.uint8) for t in range(3)]
    with pytest.raises(InputError, match="a clip of 3 frames was given to an image checkpoint"):
        pipe.encode_video(clip)
    with pytest.raises(InputError, match="a clip of 3 frames"):
        masked_prefix(pipe, np.ones((64, 64)), video=clip)
    # one frame is one image: the posterior mean of encoding it as an image
    one = pipe.encode_video(clip[1:2])
    x = torch.from_numpy(clip[1]).float().sub(127.5).div(127.5).permute(2, 0, 1)[None]
    assert one.shape == (1, pipe.vae.latent_channels, 1, 8, 8)
    assert torch.equal(one[:, :, 0], pipe.vae.encode(x, sample=False))


# -- review 13: cleanups that change no output ----------------------------------------------------
def test_the_checked_scheduler_is_the_one_returned(tiny_video, monkeypatch):
    import os

    import diffusers

    from nova.components.loaders import load_scheduler

    folder = os.path.join(tiny_video, "scheduler")
    with open(os.path.join(folder, "scheduler_config.json")) as f:
        kind = getattr(diffusers, json.load(f)["_class_name"])
    made, real = [], kind.from_config

    def counted(cls, *args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(kind, "from_config", classmethod(counted))
    scheduler = load_scheduler(folder)
    assert len(made) == 1 and made[0] is scheduler


def test_the_temporal_anchor_is_kept_per_context_object(monkeypatch):
    """The anchor was cached under id(context) without holding the context: a new context at a
    freed one's address got the old context's anchor."""
    from nova.sampling import frame_loop

    class Context:
        def __init__(self, name):
            self.name = name

    monkeypatch.setattr(
        frame_loop, "temporal_step", lambda model, state, prev, context, *rest: ("anchor of " + context.name, state)
    )
    cache = frame_loop.TemporalCache(None, None, 1, [0.0])
    first = Context("a")
    assert cache._anchor(first)[0] == "anchor of a"
    assert cache._anchor(first) is cache._anchor(first)  # reused while the context stays the same
    del first
    assert cache._anchor(Context("b"))[0] == "anchor of b"
