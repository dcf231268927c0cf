"""Safe checkpoint loading: safetensors only, validated keys and shapes, weights straight to the
target device and dtype.

Nothing from a checkpoint folder is ever imported or executed (the official repos ship
``__transformer__.py``-style shims that import ``diffnext``; they are ignored), and pickle files
(``.bin``, ``.pt``, ...) are refused.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from ..errors import CheckpointError, WeightsError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
COMPONENTS = ("transformer", "text_encoder", "tokenizer", "vae", "scheduler")
# scheduler_model.pth: URSA's sampler codebook, read with torch.load(weights_only=True) (nova/ursa/scheduler.py);
# NOVA repos have no such file.
HUB_PATTERNS = ["model_index.json", "*/*.json", "*/*.safetensors", "tokenizer/*", "scheduler/scheduler_model.pth"]


def refuse_pickle(path: str) -> None:
    if path.lower().endswith(PICKLE_SUFFIXES):
        raise CheckpointError(
            f"{path}: refusing to load a pickle file ({os.path.splitext(path)[1]}); pickles can execute code. "
            "Convert it to .safetensors, or use the official safetensors release."
        )


def weight_files(folder: str, stem: str) -> List[str]:
    """The safetensors files of a component: ``<stem>.safetensors`` or the shards listed in
    ``<stem>.safetensors.index.json``. Errors name the missing file."""
    if not os.path.isdir(folder):
        raise CheckpointError(f"missing folder {folder}")
    single = os.path.join(folder, f"{stem}.safetensors")
    index = single + ".index.json"
    if os.path.isfile(single):
        return [single]
    if os.path.isfile(index):
        try:
            with open(index, "r", encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{index}: unreadable shard index ({exc}).") from exc
        files = [os.path.join(folder, s) for s in shards]
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise CheckpointError(f"{index}: shard(s) missing: {', '.join(missing)}. Re-download the checkpoint.")
        return files
    pickles = sorted(f for f in os.listdir(folder) if f.lower().endswith(PICKLE_SUFFIXES))
    if pickles:
        refuse_pickle(os.path.join(folder, pickles[0]))
    raise CheckpointError(f"{folder}: no weights found; expected {stem}.safetensors or {stem}.safetensors.index.json.")


FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")


def read_shapes(files: Iterable[str]) -> Dict[str, Tuple[Tuple[int, ...], str, str]]:
    """Tensor names -> (shape, file, safetensors dtype) from the headers, without reading the data."""
    from safetensors import safe_open

    shapes = {}
    for path in files:
        refuse_pickle(path)
        try:
            with safe_open(path, framework="pt") as f:
                for key in f.keys():
                    sl = f.get_slice(key)
                    shapes[key] = (tuple(sl.get_shape()), path, str(sl.get_dtype()))
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc}).") from exc
    return shapes


def check_state(
    expected: Dict[str, Tuple[int, ...]],
    found: Dict[str, Tuple[Tuple[int, ...], str, str]],
    where: str,
    ignore_unexpected: Tuple[str, ...] = (),
    floating: Iterable[str] = (),
) -> None:
    """Raise :class:`WeightsError` listing missing, unexpected and mis-shaped tensors, and tensors
    the model holds in floating point (``floating``) that the file stores as integers or bools."""
    not_float = sorted(
        f"{k} ({found[k][2]} in {found[k][1]})" for k in floating if k in found and found[k][2] not in FLOAT_DTYPES
    )
    if not_float:
        raise WeightsError(
            f"{where}: tensors that must be floating point are stored as another type: " + ", ".join(not_float[:8])
        )
    missing = sorted(k for k in expected if k not in found)
    unexpected = sorted(k for k in found if k not in expected and not k.startswith(ignore_unexpected))
    wrong = sorted(
        f"{k}: file {list(found[k][0])} vs model {list(shape)}"
        for k, shape in expected.items()
        if k in found and tuple(found[k][0]) != tuple(shape)
    )
    if not (missing or unexpected or wrong):
        return

    def listing(title, items):
        more = f" ... and {len(items) - 8} more" if len(items) > 8 else ""
        return f"\n  {title} ({len(items)}): " + ", ".join(items[:8]) + more if items else ""

    raise WeightsError(
        f"{where}: the weights do not match the config (is config.json from the same checkpoint?)"
        + listing("missing", missing)
        + listing("unexpected", unexpected)
        + listing("wrong shape", wrong)
    )


def check_depths(found: Dict[str, Tuple[Tuple[int, ...], str, str]], depths, where: str) -> None:
    """Config values that set how many numbered blocks the weights hold, against the header:
    ``depths`` is ``[(prefix, value, what)]``, the blocks being ``<prefix>.<i>.*``. Checked before
    the model is built (a hostile depth of 100000 would build, even on the meta device, for minutes)."""
    import re

    for prefix, value, what in depths:
        pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
        indices = {int(m.group(1)) for m in (pattern.match(k) for k in found) if m}
        count = max(indices) + 1 if indices else 0
        if value != count:
            held = f"{prefix}.0 .. {prefix}.{count - 1}" if count else f"no {prefix}.*"
            from ..errors import ConfigError

            raise ConfigError(
                f"{where}: {what} = {value!r}, but the weights hold {count} ({held}); is config.json "
                "from the same checkpoint?"
            )


def load_tensors(files: Iterable[str], device, dtype: Optional[torch.dtype]) -> Dict[str, torch.Tensor]:
    """Read tensors straight onto ``device``, casting floating tensors to ``dtype``."""
    from safetensors import safe_open

    device = torch.device(device)
    # safetensors opens CUDA/MPS devices directly; other devices go through the CPU.
    read_device = str(device) if device.type in ("cpu", "cuda", "mps") else "cpu"
    state = {}
    for path in files:
        with safe_open(path, framework="pt", device=read_device) as f:
            for key in f.keys():
                t = f.get_tensor(key)
                if dtype is not None and t.is_floating_point():
                    t = t.to(dtype)
                state[key] = t.to(device)
    return state


def load_module(
    build,
    files: List[str],
    where: str,
    device,
    dtype,
    ignore_unexpected=(),
    config_path: Optional[str] = None,
    depths=(),
) -> nn.Module:
    """Build ``build()`` on the meta device, check the files against it, then assign the weights:
    no random init, no second copy of the weights. A config value that the module's constructor
    chokes on is reported against ``config_path``; ``depths`` (:func:`check_depths`) are checked
    against the files' headers before building."""
    found = read_shapes(files)
    check_depths(found, depths, config_path or where)
    with torch.device("meta"):
        try:
            module = build()
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, ZeroDivisionError, RuntimeError) as exc:
            from ..errors import ConfigError

            raise ConfigError(
                f"{config_path or where}: the config does not describe a buildable model ({type(exc).__name__}: {exc})."
            ) from exc
    state = module.state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items()}
    floating = [k for k, v in state.items() if v.is_floating_point()]
    check_state(expected, found, where, ignore_unexpected, floating)
    state = load_tensors(files, device, dtype)
    state = {k: v for k, v in state.items() if k in expected}
    module.load_state_dict(state, assign=True, strict=True)
    return module.eval().requires_grad_(False)


def resolve_checkpoint(path_or_repo_id: str, cache_dir: Optional[str] = None, local_files_only: bool = False) -> str:
    """A local checkpoint folder for a path or a Hugging Face repo id (downloaded into the hub
    cache, or ``cache_dir``). Only configs, tokenizer files and safetensors are fetched."""
    path = os.path.expanduser(str(path_or_repo_id))
    if os.path.isdir(path):
        return path
    if os.path.exists(path) or path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise CheckpointError(
            f"{path_or_repo_id}: not a checkpoint folder and not a Hugging Face repo id ('owner/name'). "
            f"Expected a folder with {expected_layout()}"
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a requirement
        raise CheckpointError("downloading needs the huggingface_hub package (pip install huggingface_hub).") from exc
    try:
        return snapshot_download(
            repo_id=path, allow_patterns=HUB_PATTERNS, cache_dir=cache_dir, local_files_only=local_files_only
        )
    except Exception as exc:
        raise CheckpointError(
            f"could not download '{path}' from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            f"Offline? Download it elsewhere (huggingface-cli download {path}) and pass the folder, "
            f"which must hold {expected_layout()}"
        ) from exc


def expected_layout() -> str:
    return (
        "model_index.json, transformer/{config.json, diffusion_pytorch_model.safetensors}, "
        "text_encoder/{config.json, model.safetensors or model-0000N-of-0000M.safetensors + "
        "model.safetensors.index.json}, tokenizer/{tokenizer.json, tokenizer_config.json}, "
        "vae/{config.json, diffusion_pytorch_model.safetensors}, scheduler/scheduler_config.json."
    )


def read_model_index(folder: str) -> dict:
    path = os.path.join(folder, "model_index.json")
    if not os.path.isfile(path):
        return {}
    from ..errors import ConfigError
    from .config import read_json

    index = read_json(path)
    if not isinstance(index, dict):
        raise ConfigError(f"{path}: expected a JSON object (the pipeline's components), got {type(index).__name__}.")
    return index


class HoldsModel:
    """A wrapper around one torch module, ``self.model``: its device and dtype are the module's."""

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def dtype(self):
        return next(self.model.parameters()).dtype


class CheckpointPipeline:
    """What NOVA's and URSA's pipelines share: :meth:`from_pretrained` (a folder laid out as the
    Hub repo, or a repo id), and the device and dtype, those of ``self.transformer``. A family says
    how it loads its folder in ``from_folder``."""

    transformer: nn.Module

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str,
        torch_dtype: torch.dtype = torch.float32,
        device=None,
        *,
        cache_dir: Optional[str] = None,
        local_files_only: bool = False,
        **options: Any,
    ):
        """Load a local folder laid out as the Hugging Face repo, or a repo id (its weights and
        configs downloaded once into ``cache_dir``, the Hub's cache by default; never with
        ``local_files_only``). ``torch_dtype``: the transformer's dtype; ``device``: where the weights
        go (default: the best available); ``options``: the family's own (see its ``from_folder``).
        The device is checked before anything is downloaded."""
        import inspect

        from ..devices import check_device, default_device

        signature = inspect.signature(cls.from_folder)
        try:  # before any download: a misspelt option must not cost one
            signature.bind("", torch_dtype, device, **options)
        except TypeError as exc:
            accepted = list(signature.parameters)[3:]
            raise TypeError(
                f"{cls.__name__}.from_pretrained: {exc}; its own options are {accepted or 'none'}."
            ) from None
        device = check_device(device) if device is not None else default_device()
        folder = resolve_checkpoint(path_or_repo_id, cache_dir=cache_dir, local_files_only=local_files_only)
        return cls.from_folder(folder, torch_dtype, device, **options)

    @classmethod
    def from_folder(cls, folder: str, torch_dtype: torch.dtype, device: torch.device, **options: Any):
        raise NotImplementedError(f"{cls.__name__} does not say how it loads a checkpoint folder")

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype
