"""URSA: bad inputs get our errors before any work, and the official bugs we fixed work.

Fixed official bugs (see nova/ursa/pipeline.py): ``flow_shift=`` overrides the shift for the call,
``cond_noise_scale > 0`` works on a mixture-path checkpoint, ``image=`` works on the image (IBQ) model.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import GOLDEN, ROOT

from nova.errors import CheckpointError, ConfigError, InputError, WrongFamilyError

GOLDEN_URSA = os.path.join(ROOT, "tests", "golden_ursa")
PROMPT = "motion=9.0, a bear walks through a misty forest."


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models are bound by per-op overhead; a second thread only adds synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def video_pipe():
    from nova import UrsaPipeline

    return UrsaPipeline.from_pretrained(os.path.join(GOLDEN_URSA, "t2v_tiny"), device="cpu")


@pytest.fixture(scope="module")
def image_pipe():
    from nova import UrsaPipeline

    return UrsaPipeline.from_pretrained(os.path.join(GOLDEN_URSA, "t2i_tiny"), device="cpu")


def writable_copy(tmp_path, case):
    folder = tmp_path / case
    shutil.copytree(os.path.join(GOLDEN_URSA, case), folder)
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755)
    return folder


def edit_scheduler_config(folder, **changes):
    import json

    path = folder / "scheduler" / "scheduler_config.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def random_pixels(*shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def small_call(pipe, **kwargs):
    """A cheap call on the tiny video model (2 steps, 5 frames of 32x48)."""
    args = dict(
        prompt=PROMPT,
        height=32,
        width=48,
        num_frames=5,
        num_inference_steps=2,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    )
    args.update(kwargs)
    return pipe(**args).frames


# -- wrong family -----------------------------------------------------------------------------
def test_nova_checkpoint_given_to_ursa():
    from nova import UrsaPipeline

    with pytest.raises(WrongFamilyError, match="NOVAPipeline.*NovaPipeline") as info:
        UrsaPipeline.from_pretrained(os.path.join(GOLDEN, "t2v_tiny"), device="cpu")
    assert isinstance(info.value, InputError) and "model_index.json" in str(info.value)


def test_ursa_checkpoint_given_to_nova():
    from nova import NovaPipeline

    with pytest.raises(WrongFamilyError, match="URSAPipeline.*UrsaPipeline"):
        NovaPipeline.from_pretrained(os.path.join(GOLDEN_URSA, "t2v_tiny"), device="cpu")


def test_folder_without_model_index(tmp_path):
    from nova import UrsaPipeline

    folder = writable_copy(tmp_path, "t2i_tiny")
    os.remove(folder / "model_index.json")
    with pytest.raises(WrongFamilyError, match="no model_index.json"):
        UrsaPipeline.from_pretrained(str(folder), device="cpu")


# -- sizes the tokenizer cannot make ----------------------------------------------------------
@pytest.mark.parametrize("frames,suggest", [(6, "5 or 9"), (2, "1 or 5"), (12, "9 or 13")])
def test_frame_counts_the_tokenizer_cannot_make(video_pipe, frames, suggest):
    with pytest.raises(InputError, match=rf"num_frames = {frames}; .*1 \+ 4k.*{suggest}"):
        small_call(video_pipe, num_frames=frames)


def test_size_not_a_multiple_of_the_stride(video_pipe):
    with pytest.raises(InputError, match="height = 30; .*multiples of 8"):
        small_call(video_pipe, height=30)


# -- conditioning -----------------------------------------------------------------------------
def test_num_cond_frames_beyond_the_clip(video_pipe):
    video = random_pixels(9, 32, 48, 3)
    with pytest.raises(InputError, match="9 frames, beyond the clip of num_frames = 5"):
        small_call(video_pipe, video=video, num_cond_frames=9)
    with pytest.raises(InputError, match="num_cond_frames = 13 but the video has only 9 frames"):
        small_call(video_pipe, num_frames=13, video=video, num_cond_frames=13)
    with pytest.raises(InputError, match="4 frames; .*1 \\+ 4k"):
        small_call(video_pipe, video=video, num_cond_frames=4)


def test_condition_of_the_wrong_size(video_pipe, image_pipe):
    with pytest.raises(InputError, match="image is 64x32 .* clip is 48x32"):
        small_call(video_pipe, image=random_pixels(32, 64, 3))
    with pytest.raises(InputError, match="uint8"):
        small_call(video_pipe, image=random_pixels(32, 48, 3).astype(np.float32))
    with pytest.raises(InputError, match="video= needs a video checkpoint"):
        image_pipe(prompt=PROMPT, height=48, width=64, video=random_pixels(5, 48, 64, 3), num_inference_steps=1)


def test_condition_starts_the_first_latent_frames(video_pipe):
    """No token jumps at step 0 (the rate is 0 at t = 0), so the ids after it are the condition."""
    video = random_pixels(5, 32, 48, 3, seed=3)
    pixels = torch.from_numpy(video).float().sub(127.5).div(127.5).permute(3, 0, 1, 2).unsqueeze(0)
    cond = video_pipe.vae.encode(pixels)
    after_first = []
    small_call(video_pipe, num_frames=9, video=video, callback_on_step_end=lambda s, n, ids: after_first.append(ids))
    assert torch.equal(after_first[0][:, :2], cond.long())


# -- official bugs, fixed ---------------------------------------------------------------------
def test_flow_shift_overrides_the_shift(video_pipe):
    shift = video_pipe.scheduler.config.shift
    assert torch.equal(small_call(video_pipe, flow_shift=shift), small_call(video_pipe))
    assert [video_pipe.scheduler.timestep_to_t(i, 4, shift=1.0) for i in range(4)] == [0.0, 0.25, 0.5, 0.75]
    with pytest.raises(InputError, match="flow_shift"):
        small_call(video_pipe, flow_shift=0)


def test_v2v_with_noise_on_a_mixture_path_checkpoint(tmp_path):
    from nova import UrsaPipeline

    folder = writable_copy(tmp_path, "t2v_tiny")
    edit_scheduler_config(folder, alpha=None)
    pipe = UrsaPipeline.from_pretrained(str(folder), device="cpu")
    assert not pipe.scheduler.config.metric
    ids = small_call(pipe, num_frames=9, video=random_pixels(5, 32, 48, 3), cond_noise_scale=0.1)
    assert ids.shape == (1, 3, 4, 6) and 0 <= ids.min() and ids.max() < pipe.scheduler.codebook_size
    # At t = 0 the mixture path is pure noise: the draw equals random_(to=K) from the same seed.
    clean = torch.arange(24).view(1, 1, 4, 6)
    noised = pipe.scheduler.add_noise(clean, 0.0, torch.Generator().manual_seed(5))
    codes = pipe.scheduler.codebook_size
    uniform = torch.empty_like(clean).random_(to=codes, generator=torch.Generator().manual_seed(5))
    assert torch.equal(noised, uniform)


def test_image_condition_on_the_image_model(image_pipe):
    image = random_pixels(48, 64, 3, seed=7)
    pixels = torch.from_numpy(image).float().sub(127.5).div(127.5).permute(2, 0, 1).unsqueeze(0)
    cond = image_pipe.vae.encode(pixels)
    after_first = []
    frames = image_pipe(
        prompt=PROMPT,
        height=48,
        width=64,
        image=image,
        num_inference_steps=3,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
        callback_on_step_end=lambda s, n, ids: after_first.append(ids),
    ).frames
    assert frames.shape == (1, 48, 64, 3) and frames.dtype == np.uint8
    assert torch.equal(after_first[0][:, 0], cond.long())


# -- configs and files ------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", ["fast", -1, 0])
def test_unknown_alpha(tmp_path, alpha):
    from nova import UrsaPipeline

    folder = writable_copy(tmp_path, "t2v_tiny")
    edit_scheduler_config(folder, alpha=alpha)
    with pytest.raises(ConfigError, match=r"scheduler_config.json: alpha = .*positive number .*or null"):
        UrsaPipeline.from_pretrained(str(folder), device="cpu")


def test_codebook_rows_must_match_the_head(tmp_path):
    from nova import UrsaPipeline

    folder = writable_copy(tmp_path, "t2v_tiny")
    torch.save({"path.emb": torch.zeros(100, 6)}, folder / "scheduler" / "scheduler_model.pth")
    with pytest.raises(CheckpointError, match="100 codes .*lm_head_size = 512"):
        UrsaPipeline.from_pretrained(str(folder), device="cpu")


EXECUTED = []


def _mark_executed():
    EXECUTED.append(True)
    return torch.zeros(512, 6)


class _Payload:
    def __reduce__(self):
        return (_mark_executed, ())


def test_scheduler_file_is_never_unpickled(tmp_path):
    from nova import UrsaPipeline

    folder = writable_copy(tmp_path, "t2v_tiny")
    torch.save({"path.emb": _Payload()}, folder / "scheduler" / "scheduler_model.pth")
    with pytest.raises(CheckpointError, match="scheduler_model.pth: not a plain tensor file"):
        UrsaPipeline.from_pretrained(str(folder), device="cpu")
    assert not EXECUTED


def test_checkpoint_code_is_never_imported():
    """The golden folders carry __*.py stubs that raise when imported; loading works regardless."""
    stub = os.path.join(GOLDEN_URSA, "t2v_tiny", "transformer", "__transformer__.py")
    assert "raise RuntimeError" in open(stub, encoding="utf-8").read()
    code = (
        "import sys, os; from nova import UrsaPipeline; "
        f"UrsaPipeline.from_pretrained({os.path.join(GOLDEN_URSA, 't2v_tiny')!r}, device='cpu'); "
        "assert not {'__transformer__', '__vae__', '__scheduler__'} & set(sys.modules), 'checkpoint code imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_import_stays_lazy():
    code = (
        "import sys, nova; assert 'nova.ursa.pipeline' not in sys.modules; "
        "from nova import UrsaPipeline; assert UrsaPipeline.__module__ == 'nova.ursa.pipeline'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_output_types(video_pipe):
    ids = small_call(video_pipe)
    assert ids.dtype == torch.int64 and ids.shape == (1, 2, 4, 6)
    with pytest.raises(InputError, match="output_type = 'gif'"):
        small_call(video_pipe, output_type="gif")


def test_downloads_fetch_the_sampler_codebook_and_no_other_pickle():
    from fnmatch import fnmatch

    from nova.components.loading import HUB_PATTERNS

    assert any(fnmatch("scheduler/scheduler_model.pth", p) for p in HUB_PATTERNS)
    pickles = ("transformer/diffusion_pytorch_model.bin", "vae/model.pt", "model.ckpt", "scheduler/other.pth")
    assert not any(fnmatch(f, p) for p in HUB_PATTERNS for f in pickles)
