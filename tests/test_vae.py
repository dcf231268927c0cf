"""The Open-Sora-Plan VAE: every latent count decodes to all its frames, and the memory-saving
paths (streamed layers, chunked causal convs, smaller tiles) agree with the plain decode."""

import pytest
import torch

from nova.models.vae_opensora import AutoencoderKLOpenSora, CausalConv3d, temporal_tiles

CONFIG = {
    "_class_name": "AutoencoderKLOpenSora",
    "block_out_channels": [32, 32, 64, 64],
    "layers_per_block": 1,
    "down_block_types": ["DownEncoderBlock2D"] * 2 + ["DownEncoderBlock3D"] * 2,
    "up_block_types": ["UpDecoderBlock3D"] * 4,
    "latent_channels": 4,
    "norm_num_groups": 32,
}


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return AutoencoderKLOpenSora(CONFIG).eval()


@pytest.mark.parametrize("latents", [1, 2, 5, 6, 7, 9, 12])
def test_every_latent_count_decodes_every_frame(vae, latents):
    with torch.inference_mode():
        out = vae.decode(torch.randn(1, 4, latents, 4, 6))
    assert out.shape == (1, 3, 1 + 4 * (latents - 1), 32, 48)


def test_tiles_match_the_official_ones_where_those_cover_all_frames():
    assert temporal_tiles(9, 5) == [(0, 5), (4, 9)]  # official: [0:5], [4:9]
    assert temporal_tiles(13, 5) == [(0, 5), (4, 9), (8, 13)]
    assert temporal_tiles(7, 5) == [(0, 5), (4, 7)]  # official drops [4:7] (17 frames instead of 25)
    assert temporal_tiles(33, 17) == [(0, 17), (16, 33)]


def test_streamed_decode_equals_plain(vae):
    z = torch.randn(1, 4, 5, 4, 6, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = vae.decode(z)
        vae.decoder.stream_elements = 0  # stream every layer
        try:
            for chunk in (1, 2, 3):
                vae.decoder.stream_frames = chunk
                assert torch.allclose(vae.decode(z), ref, atol=1e-4)
        finally:
            vae.decoder.stream_elements = type(vae.decoder).stream_elements
            vae.decoder.stream_frames = type(vae.decoder).stream_frames


def test_chunked_causal_conv_equals_plain():
    torch.manual_seed(0)
    conv = CausalConv3d(8, 8, 3, 1, 1)
    x = torch.randn(1, 8, 7, 6, 6)
    with torch.inference_mode():
        ref = conv(x)
        conv.chunk_elements = 8 * 6 * 6 * 3  # three frames per chunk (with history)
        assert torch.allclose(conv(x), ref, atol=1e-6)


def test_smaller_tiles_give_all_frames(vae):
    z = torch.randn(1, 4, 9, 4, 6)
    with torch.inference_mode():
        frames = sum(x.shape[2] for x in vae.decode_tiles(z, tile_latents=3))
    assert frames == 33
