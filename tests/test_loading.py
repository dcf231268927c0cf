"""Loading is safe (no checkpoint code, no pickles) and every bad checkpoint gets a clear error."""

import json
import os
import shutil

import pytest
import torch
from conftest import GOLDEN, edit_json

from nova import NovaPipeline
from nova.components.loaders import load_transformer
from nova.components.loading import resolve_checkpoint
from nova.components.text_encoder import load_phi
from nova.components.vae import load_vae
from nova.errors import CheckpointError, ConfigError, WeightsError


@pytest.fixture
def ckpt(tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(os.path.join(GOLDEN, "t2v_tiny"), dst)
    for root, _, files in os.walk(dst):
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    return dst


def test_checkpoint_code_is_never_executed(ckpt):
    marker = ckpt / "executed.txt"
    for shim in ("transformer/__transformer__.py", "vae/__vae__.py", "text_encoder/__text_encoder__.py"):
        (ckpt / shim).write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    pipe = NovaPipeline.from_pretrained(str(ckpt), device="cpu")
    assert pipe.transformer is not None and pipe.vae is not None and pipe.text_encoder is not None
    assert not marker.exists()


@pytest.mark.parametrize(
    "component,stem",
    [("vae", "diffusion_pytorch_model"), ("transformer", "diffusion_pytorch_model"), ("text_encoder", "model")],
)
def test_pickle_weights_are_refused(ckpt, component, stem):
    folder = ckpt / component
    (folder / f"{stem}.safetensors").rename(folder / f"{stem}.bin")
    with pytest.raises(CheckpointError, match=rf"{stem}\.bin.*pickle"):
        NovaPipeline.from_pretrained(str(ckpt), device="cpu")


def test_unknown_arch(ckpt):
    edit_json(ckpt / "transformer" / "config.json", arch=["vit_d2w128", "resnet50", "mlp_d2w96"])
    with pytest.raises(ConfigError, match=r"config\.json.*arch\[1\].*'resnet50'"):
        load_transformer(str(ckpt / "transformer"))


def test_config_depths_are_checked_against_the_weights_before_building(ckpt):
    """A hostile depth (vit_d100000...) used to build for minutes before the header was compared."""
    path = ckpt / "transformer" / "config.json"
    arch = json.loads(path.read_text())["arch"]
    width = arch[1].split("w")[1]
    edit_json(path, arch=[arch[0], f"vit_d1000w{width}", arch[2]])
    with pytest.raises(
        ConfigError,
        match=rf"transformer.config\.json: arch\[1\] 'vit_d1000w{width}': depth = 1000, "
        r"but the weights hold \d+ \(image_encoder\.blocks\.0 \.\. ",
    ):
        load_transformer(str(ckpt / "transformer"))
    edit_json(ckpt / "text_encoder" / "config.json", num_hidden_layers=1000)
    with pytest.raises(ConfigError, match=r"text_encoder.config\.json: num_hidden_layers = 1000, but the weights hold"):
        load_phi(str(ckpt / "text_encoder"))
    edit_json(ckpt / "vae" / "config.json", layers_per_block=1000)
    with pytest.raises(
        ConfigError,
        match=r"vae.config\.json: layers_per_block = 1000, but the weights hold \d+ "
        r"\(encoder\.down_blocks\.0\.resnets\.0",
    ):
        load_vae(str(ckpt / "vae"))


def test_missing_config_key(ckpt):
    path = ckpt / "transformer" / "config.json"
    data = json.loads(path.read_text())
    del data["image_base_size"]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"config\.json.*missing key.*image_base_size"):
        load_transformer(str(ckpt / "transformer"))


def test_sizes_that_do_not_divide(ckpt):
    edit_json(ckpt / "transformer" / "config.json", image_size=[60, 96])
    with pytest.raises(ConfigError, match="not divisible"):
        load_transformer(str(ckpt / "transformer"))


def test_width_without_heads(ckpt):
    edit_json(ckpt / "transformer" / "config.json", arch=["vit_d2w32", "vit_d4w32", "mlp_d2w96"])
    with pytest.raises(ConfigError, match="multiple of 64"):
        load_transformer(str(ckpt / "transformer"))


def test_wrong_tensor_shape(ckpt):
    # A config whose mixer rank differs from the weights: shapes disagree, nothing loads.
    edit_json(ckpt / "transformer" / "config.json", video_mixer_rank=4)
    with pytest.raises(WeightsError, match=r"wrong shape \(2\).*video_encoder\.mixer"):
        load_transformer(str(ckpt / "transformer"))


def test_missing_and_unexpected_weights(ckpt):
    from safetensors.torch import load_file, save_file

    path = ckpt / "transformer" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(path))
    state.pop("mask_embed.bos_token")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(path))
    with pytest.raises(
        WeightsError, match=r"missing \(1\): mask_embed\.bos_token(.|\n)*unexpected \(1\): extra\.weight"
    ):
        load_transformer(str(ckpt / "transformer"))


def test_missing_shard(ckpt, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = ckpt / "text_encoder"
    state = load_file(str(folder / "model.safetensors"))
    keys = sorted(state)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
    for name, names in shards.items():
        save_file({k: state[k] for k in names}, str(folder / name), metadata={"format": "pt"})
    (folder / "model.safetensors").unlink()
    index = {"metadata": {}, "weight_map": {k: n for n, names in shards.items() for k in names}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    model = load_phi(str(folder))  # sharded loads
    assert model.config.hidden_size == 80
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model-00002-of-00002\.safetensors"):
        load_phi(str(folder))


def test_unknown_vae_class(ckpt):
    edit_json(ckpt / "vae" / "config.json", _class_name="AutoencoderKLWan")
    with pytest.raises(ConfigError, match=r"vae/config\.json.*AutoencoderKLWan"):
        load_vae(str(ckpt / "vae"))


def test_weights_go_to_requested_dtype(ckpt):
    model = load_transformer(str(ckpt / "transformer"), dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.text_embed.weight.dtype == torch.bfloat16


def test_offline_repo_id_names_repo_and_layout(tmp_path):
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint("BAAI/nova-d48w1024-osp480", cache_dir=str(tmp_path), local_files_only=True)
    msg = str(err.value)
    assert "BAAI/nova-d48w1024-osp480" in msg and "transformer/" in msg and "model_index.json" in msg


def test_hub_cache_layout_resolves(tmp_path):
    """A folder laid out like the hub cache (models--owner--name/snapshots/<rev>) loads offline."""
    cache = tmp_path / "hub"
    snap = cache / "models--BAAI--nova-tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(os.path.join(GOLDEN, "t2i_tiny"), snap)
    (cache / "models--BAAI--nova-tiny" / "refs").mkdir()
    (cache / "models--BAAI--nova-tiny" / "refs" / "main").write_text("0" * 40)
    folder = resolve_checkpoint("BAAI/nova-tiny", cache_dir=str(cache), local_files_only=True)
    pipe = NovaPipeline.from_pretrained(folder, device="cpu")
    assert pipe.config.image_size == (64, 64)


def test_not_a_nova_checkpoint(ckpt):
    edit_json(ckpt / "model_index.json", _class_name="StableDiffusionPipeline")
    with pytest.raises(CheckpointError, match="not a NOVA checkpoint"):
        NovaPipeline.from_pretrained(str(ckpt), device="cpu")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            dict(load_vea=False),
            TypeError,
            r"NovaPipeline.from_pretrained: .*'load_vea'; its own options are \['text",
        ),
        (dict(device="nodevice"), ValueError, "device = 'nodevice' is not a device name"),
    ],
)
def test_from_pretrained_refuses_bad_arguments_before_downloading(monkeypatch, kwargs, error, match):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(error, match=match):
        NovaPipeline.from_pretrained("BAAI/nova-d48w1024-osp480", **kwargs)


def test_ursa_from_pretrained_takes_no_nova_options():
    from nova import UrsaPipeline

    with pytest.raises(TypeError, match="'load_vae'; its own options are none"):
        UrsaPipeline.from_pretrained(os.path.join(os.path.dirname(GOLDEN), "golden_ursa", "t2v_tiny"), load_vae=False)
