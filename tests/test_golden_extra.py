"""Parity with the official implementation on configurations beyond the shared golden cases
(rotary positions, no mixer, rank -1 mixer, DDPM and flow image models; see tests/golden_extra)."""

import json
import os

import pytest
import torch
from conftest import ROOT
from tolerances import assert_latents_close

from nova.components.loaders import load_scheduler, load_transformer
from nova.pipeline import NovaPipeline
from nova.sampling.fast import Accel

EXTRA = os.path.join(ROOT, "tests", "golden_extra")
CASES = sorted(d for d in os.listdir(EXTRA) if os.path.isdir(os.path.join(EXTRA, d)))


def _runs():
    for case in CASES:
        with open(os.path.join(EXTRA, case, "case.json"), encoding="utf-8") as f:
            for run in json.load(f)["runs"]:
                yield pytest.param(case, run, id=f"{case}-{run['name']}")


@pytest.mark.parametrize("accel", [Accel(), Accel.plain()], ids=["fast", "plain"])
@pytest.mark.parametrize("case,run", list(_runs()))
def test_official_latents(case, run, accel):
    from safetensors.torch import load_file

    folder = os.path.join(EXTRA, case)
    expected = load_file(os.path.join(folder, "expected.safetensors"))
    scheduler = load_scheduler(os.path.join(folder, "scheduler"))
    pipe = NovaPipeline(load_transformer(os.path.join(folder, "transformer")), scheduler)
    pipe.accel = accel
    kw = {k: v for k, v in run.items() if k not in ("name", "seed")}
    out = pipe(prompt_embeds=[expected["prompt_embeds"]], generator=torch.Generator().manual_seed(run["seed"]), **kw)
    latents = out.frames if out.frames is not None else out.images
    flow = type(scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert_latents_close(latents, expected[f"{run['name']}.latents"], flow_matching=flow)
