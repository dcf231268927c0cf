"""Compare our URSA transformer with the official one at the real widths (0.6B / 1.7B), on the CPU.

The golden cases are tiny; this checks that nothing in our transformer depends on the size: the official
``Qwen3Model`` of diffnext (a checkout of github.com/baaivision/URSA, commit 29284bb) and ours get the same
random weights at the real hidden size, MLP width and 16 / 8 heads, and must give the same logits for a
``[prompt | bov | codes]`` sequence with 3D positions. The vocabulary is cut (the embedding is a lookup,
its size changes no arithmetic). The official code runs as the golden README describes: SwiGLU as
``x*y/(1+exp(-x))`` on the CPU, no torch.compile; ``einops`` / ``scipy`` (imported but unused on this path)
are stubbed when absent.

    python tools/ursa_vs_official.py --official path/to/URSA --size 0.6B --layers 28
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDTHS = {"0.6B": (1024, 3072), "1.7B": (2048, 6144)}


def stub_missing(name: str, **attrs) -> None:
    try:
        __import__(name)
    except ImportError:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module


def import_official(checkout: str):
    os.environ["TORCHDYNAMO_DISABLE"] = "1"  # the reference is eager
    sys.path.insert(0, checkout)
    import torch

    stub_missing("einops", rearrange=None, repeat=None)  # only the flash-attn fallback uses them
    import diffnext.models.flash_attention as flash  # noqa: F401  (transformers loads before the scipy stub)
    import diffnext.models.text_encoders.qwen3 as qwen3

    def swiglu(x, y):  # the official kernel is CUDA-only; the same expression in fp32
        return x * y / (1 + torch.exp(-x))

    qwen3.swiglu = swiglu
    stub_missing("scipy")
    stub_missing("scipy.stats")
    from diffnext.models.embeddings import FlexRotaryEmbedding

    return qwen3, FlexRotaryEmbedding


def compare_sampler(checkout: str, tokens: int) -> int:
    """One metric-path step and the last step at the real codebook (64,000 FSQ codes, fp16 path.emb),
    ours vs the official KineticOptimalScheduler, same seeds: the ids must be equal."""
    sys.path.insert(0, checkout)
    sys.path.insert(0, ROOT)
    import torch
    from diffnext.schedulers.scheduling_dfm import KineticOptimalScheduler as Official
    from diffnext.schedulers.scheduling_dfm import MetricDiscreteProbPath

    from nova.ursa.config import UrsaSchedulerConfig
    from nova.ursa.scheduler import KineticOptimalScheduler
    from nova.ursa.tokenizer_fsq import FSQuantizer

    codes = torch.arange(64000).view(1, 1, 1, -1)
    emb = FSQuantizer.dequantize(codes, torch.float32).permute(0, 2, 3, 4, 1).reshape(-1, 6)  # [64000, 6] FSQ codes
    config = UrsaSchedulerConfig(alpha=0.9, c=3.0, shift=5.0, eps=1e-5)
    ours = KineticOptimalScheduler(config, emb)
    official = Official(alpha=0.9, c=3.0, shift=5.0, eps=1e-5)
    official.path = MetricDiscreteProbPath(emb=emb.half(), alpha=0.9, c=3.0, eps=1e-5)
    official.codebook_size = 64000
    official.set_timesteps(25)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, tokens, 64000, generator=generator) * 3
    sample = torch.randint(0, 64000, (1, tokens), generator=generator)
    worst = 0
    for step in (12, 24):
        start = time.time()
        mine = ours.step(logits.clone(), step, 25, sample, torch.Generator().manual_seed(step))
        middle = time.time()
        theirs = official.step(logits.clone(), step, sample, generator=torch.Generator().manual_seed(step))[0]
        end = time.time()
        equal = torch.equal(mine, theirs)
        worst = max(worst, int(not equal))
        print(
            f"sampler step {step}/25, {tokens} tokens x 64000 codes: ids equal {equal}; "
            f"ours {middle - start:.2f}s, official {end - middle:.2f}s"
        )
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="a checkout of github.com/baaivision/URSA")
    parser.add_argument("--size", choices=sorted(WIDTHS), default="0.6B")
    parser.add_argument("--layers", type=int, default=28)
    parser.add_argument(
        "--sampler-tokens",
        type=int,
        default=0,
        help="instead of the transformer, compare the sampler on this many tokens",
    )
    args = parser.parse_args(argv)
    if args.sampler_tokens:
        return compare_sampler(args.official, args.sampler_tokens)
    qwen3, FlexRotaryEmbedding = import_official(args.official)
    sys.path.insert(0, ROOT)
    import torch
    from transformers import Qwen3Config

    from nova.ursa.config import UrsaTransformerConfig
    from nova.ursa.transformer import UrsaTransformer, rope_positions

    hidden, intermediate = WIDTHS[args.size]
    lm_vocab, codes = 1000, 4096
    config = dict(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_attention_heads=16,
        num_key_value_heads=8,
        num_hidden_layers=args.layers,
        max_window_layers=args.layers,
        rope_theta=1000000,
        vocab_size=lm_vocab + codes,
        lm_vocab_size=lm_vocab,
        lm_head_size=codes,
        bov_token_id=lm_vocab - 1,
    )
    qwen_config = Qwen3Config(
        **{k: v for k, v in config.items() if k not in ("lm_vocab_size", "lm_head_size", "bov_token_id")}
    )
    qwen_config.rope_theta, qwen_config.head_dim, qwen_config.max_position_embeddings = 1000000, 128, 4096
    qwen_config._attn_implementation = "sdpa"
    official = qwen3.Qwen3Model(qwen_config)
    official.flex_rope = FlexRotaryEmbedding(128, base=1000000)
    for layer in official.layers:
        layer.self_attn.is_causal = False  # as URSATransformer3DModel sets it
    ours = UrsaTransformer(UrsaTransformerConfig(**config))
    generator = torch.Generator().manual_seed(0)
    state = {
        k: torch.randn(v.shape, generator=generator) * 0.02 + (1.0 if "norm" in k else 0.0)
        for k, v in ours.state_dict().items()
    }
    # assign=True: both models share one copy of the weights (1.7B at 28 layers fits in ~6 GB).
    ours.load_state_dict(state, assign=True)
    official.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}, assign=True)
    prompt_length, grid = 32, (2, 4, 6)
    ids = torch.cat(
        [
            torch.randint(0, lm_vocab, (2, prompt_length), generator=generator),
            torch.full((2, 1), lm_vocab - 1),
            torch.randint(lm_vocab, lm_vocab + codes, (2, 48), generator=generator),
        ],
        1,
    )
    positions = rope_positions(prompt_length, grid)
    with torch.no_grad():
        start = time.time()
        mine = ours.eval()(ids, positions)
        middle = time.time()
        theirs = torch.nn.functional.linear(official.eval()(ids, rope_pos=positions)[0], state["lm_head.weight"])
        end = time.time()
    diff = (mine - theirs).abs().max().item()
    print(
        f"URSA {args.size} widths, {args.layers} layers: logits max abs difference {diff:g} "
        f"(largest logit {theirs.abs().max().item():.3g}); ours {middle - start:.2f}s, official {end - middle:.2f}s"
    )
    return 0 if diff <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
