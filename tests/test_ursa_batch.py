"""`python -m nova batch` on URSA checkpoints (tiny golden ones): the files of each layout, each
unit equal to what `nova generate` / UrsaPipeline makes with the unit's seed, resume, and the
options of the other family refused before any work."""

import json
import os

import numpy as np
import pytest
import torch
from conftest import ROOT

from nova.batch import manifest
from nova.batch.items import OPTIONS
from nova.batch.runner import BatchJob, run
from nova.errors import InputError

GOLDEN_URSA = os.path.join(ROOT, "tests", "golden_ursa")
T2V, T2I = os.path.join(GOLDEN_URSA, "t2v_tiny"), os.path.join(GOLDEN_URSA, "t2i_tiny")
SMALL_VIDEO = {"width": 48, "height": 32, "frames": 5, "steps": 2}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _job(model, prompts, out, **kw):
    """As the CLI makes it: steps and cfg unset (the family's defaults) unless given."""
    options = {o.key: None if o.key in ("steps", "cfg") else o.default for o in OPTIONS}
    options.update({k: kw.pop(k) for k in list(kw) if k in options})
    kw.setdefault("device", "cpu")
    return BatchJob(model, str(prompts), str(out), options=options, **kw)


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _done(out):
    return {
        k: r for k, r in manifest.latest(manifest.read(os.path.join(out, manifest.NAME))).items() if r["kind"] == "done"
    }


@pytest.fixture
def sampled(monkeypatch):
    """The frames every UrsaPipeline call returns, by the seed of its generator (an mp4 holds them
    lossily, and x264's bytes for the same frames may differ between processes)."""
    from nova.ursa.pipeline import UrsaPipeline

    calls = {}
    call = UrsaPipeline.__call__

    def spy(self, *args, **kw):
        out = call(self, *args, **kw)
        calls.setdefault(kw["generator"].initial_seed(), []).append(np.array(out.frames))
        return out

    monkeypatch.setattr(UrsaPipeline, "__call__", spy)
    return calls


def _generate(args, cwd, sampled):
    """`nova generate` in this process: the frames it sampled and the file it wrote."""
    from nova.__main__ import main

    seed = int(args[args.index("--seed") + 1])
    sampled.pop(seed, None)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        assert main(["generate", "--device", "cpu", "--dtype", "fp32", *args]) == 0
    finally:
        os.chdir(old)
    return sampled.pop(seed)[0]


def _mp4_frames(path):
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_video_batch_matches_generate_and_resumes(tmp_path, sampled):
    prompts = _write(tmp_path / "p.txt", ["a bear", "motion=3.0, waves on a beach"])
    out = tmp_path / "out"
    job = _job(T2V, prompts, out, samples=2, batch_size=2, negative_prompt="blurry", **SMALL_VIDEO)
    summary = run(job)
    assert (summary.total, summary.done, summary.failed, summary.missing) == (4, 4, {}, 0)
    done = _done(out)
    assert sorted(r["path"] for r in done.values()) == ["00000-0.mp4", "00000-1.mp4", "00001-0.mp4", "00001-1.mp4"]
    assert not os.path.exists(out / "prompt_embeds.safetensors")  # (URSA tokenizes as it samples)
    run_record = next(r for r in manifest.read(os.path.join(out, manifest.NAME)) if r["kind"] == "run")
    assert (
        run_record["args"]["steps"] == 2 and run_record["args"]["cfg"] == 7.0 and "weights_sha256" in run_record["args"]
    )
    batch_frames = {seed: frames[0] for seed, frames in sampled.items()}
    assert sorted(batch_frames) == sorted(r["seed"] for r in done.values())
    # every unit: what `nova generate` samples with that unit's seed (the second item's own
    # motion= prefix is kept, the first gets motion=9.0 as generate gives it), written to its file
    for (item, sample), record in sorted(done.items()):
        prompt = ["a bear", "motion=3.0, waves on a beach"][item]
        expected = _generate(
            [
                "--model",
                T2V,
                "--prompt",
                prompt,
                "--negative-prompt",
                "blurry",
                "--width",
                "48",
                "--height",
                "32",
                "--frames",
                "5",
                "--steps",
                "2",
                "--seed",
                str(record["seed"]),
                "--out",
                f"g{item}{sample}.mp4",
            ],
            tmp_path,
            sampled,
        )
        assert expected.shape == (1, 5, 32, 48, 3)
        assert np.array_equal(batch_frames[record["seed"]], expected), (item, sample)
        written = _mp4_frames(out / record["path"]).astype(int)
        assert written.shape == (5, 32, 48, 3)
        assert np.abs(written - _mp4_frames(tmp_path / f"g{item}{sample}.mp4")).mean() < 4  # (both lossy)
    assert len({r["sha256"] for r in done.values()}) == 4

    # resume: a rerun samples nothing; a lost output is made again, from the same frames
    sampled.clear()
    assert run(job).done == 4 and not sampled
    records = manifest.read(os.path.join(out, manifest.NAME))
    assert sum(r["kind"] == "done" for r in records) == 4
    lost = done[(1, 0)]
    os.remove(out / lost["path"])
    again = run(job)
    assert again.done == 4 and list(sampled) == [lost["seed"]]
    assert np.array_equal(sampled[lost["seed"]][0], batch_frames[lost["seed"]])
    assert sum(r["kind"] == "done" for r in manifest.read(os.path.join(out, manifest.NAME))) == 5
    assert os.path.isfile(out / lost["path"])
    # other arguments in the same folder are refused
    with pytest.raises(InputError, match="steps"):
        run(_job(T2V, prompts, out, samples=2, batch_size=2, negative_prompt="blurry", **{**SMALL_VIDEO, "steps": 3}))


def test_vbench_layout(tmp_path, sampled):
    prompts = _write(tmp_path / "p.txt", ["a bear"])
    out = tmp_path / "out"
    summary = run(_job(T2V, prompts, out, samples=2, layout="vbench", motion=0.0, **SMALL_VIDEO))
    assert summary.done == 2
    paths = sorted(r["path"] for r in _done(out).values())
    assert paths == ["a bear-0.mp4", "a bear-1.mp4"]
    seed = _done(out)[(0, 1)]["seed"]
    ours = sampled[seed][0]
    # motion 0: no prefix, as `generate --motion 0` (and not what motion 9 gives)
    expected = _generate(
        [
            "--model",
            T2V,
            "--prompt",
            "a bear",
            "--motion",
            "0",
            "--width",
            "48",
            "--height",
            "32",
            "--frames",
            "5",
            "--steps",
            "2",
            "--seed",
            str(seed),
            "--out",
            "g.mp4",
        ],
        tmp_path,
        sampled,
    )
    assert np.array_equal(ours, expected)
    other = _generate(
        [
            "--model",
            T2V,
            "--prompt",
            "a bear",
            "--width",
            "48",
            "--height",
            "32",
            "--frames",
            "5",
            "--steps",
            "2",
            "--seed",
            str(seed),
            "--out",
            "h.mp4",
        ],
        tmp_path,
        sampled,
    )
    assert not np.array_equal(ours, other)


def test_image_batch_geneval_layout_is_the_official_image(tmp_path):
    from PIL import Image
    from safetensors.torch import load_file

    from nova.ursa.pipeline import UrsaPipeline

    bear = "The bear, calm and still, gazes upward as if lost in contemplation of the cosmos."
    negative = "worst quality, low quality, inconsistent motion, static, still, blurry, jittery, distorted, ugly"
    prompts = _write(
        tmp_path / "p.jsonl",
        [
            json.dumps({"prompt": bear, "seed": 1, "tag": "single_object", "include": [{"class": "bear", "count": 1}]}),
            json.dumps({"prompt": "a cup", "steps": 2}),
        ],
    )
    out = tmp_path / "out"
    summary = run(
        _job(
            T2I,
            prompts,
            out,
            samples=2,
            batch_size=2,
            layout="geneval",
            width=64,
            height=48,
            steps=8,
            negative_prompt=negative,
        )
    )
    assert (summary.done, summary.failed) == (4, {})
    done = _done(out)
    assert sorted(r["path"] for r in done.values()) == [
        "00000/samples/0000.png",
        "00000/samples/0001.png",
        "00001/samples/0000.png",
        "00001/samples/0001.png",
    ]
    with open(out / "00000" / "metadata.jsonl", encoding="utf-8") as f:
        assert json.loads(f.read())["tag"] == "single_object"
    with Image.open(out / "00000" / "samples" / "0000.png") as im:
        ours = np.asarray(im.convert("RGB")).astype(int)
    official = load_file(os.path.join(T2I, "expected.safetensors"))["t2i_seed1.frames"][0].numpy().astype(int)
    assert np.abs(ours - official).max() <= 1  # item seed 1, sample 0: seed 1, 8 steps, cfg 7 (URSA's default)
    # the other units: UrsaPipeline with the unit's seed
    pipe = UrsaPipeline.from_pretrained(T2I, device="cpu")
    for (item, sample), record in done.items():
        frames = pipe(
            prompt=[bear, "a cup"][item],
            negative_prompt=negative,
            height=48,
            width=64,
            num_inference_steps=[8, 2][item],
            guidance_scale=7.0,
            generator=torch.Generator().manual_seed(record["seed"]),
            output_type="np",
        ).frames
        with Image.open(out / record["path"]) as im:
            assert np.array_equal(np.asarray(im.convert("RGB")), frames[0]), (item, sample)


def test_options_of_the_other_family_are_refused_before_work(tmp_path):
    prompts = _write(tmp_path / "p.txt", ["a bear"])
    out = tmp_path / "out"
    for kw, named in [
        ({"window": 3}, "--window: NOVA options"),
        ({"mask": str(prompts)}, "--mask: NOVA options"),
        ({"denoise": 0.5}, "--denoise"),
        ({"loop": 4, "blend": 2}, "--blend, --loop: NOVA options"),
        ({"keyframe": "a.png@0"}, "--keyframe"),
        ({"reference": True}, "--reference: NOVA options"),
        ({"image": str(prompts)}, "--image: NOVA options"),
    ]:
        with pytest.raises(InputError, match=named):
            run(_job(T2V, prompts, out, **{**SMALL_VIDEO, **kw}))
        assert not os.path.exists(out)
    # per item (JSONL): recorded as failed with the reason, the other items done
    jsonl = _write(
        tmp_path / "p.jsonl",
        [
            json.dumps({"prompt": "a bear", "loop": 4}),
            json.dumps({"prompt": "a bear", "frames": 6}),
            json.dumps({"prompt": ["a", "b"]}),
            json.dumps({"prompt": "a fox"}),
        ],
    )
    summary = run(_job(T2V, jsonl, out, **SMALL_VIDEO))
    assert summary.done == 1 and sorted(summary.failed) == [(0, 0), (1, 0), (2, 0)]
    assert "loop: NOVA options" in summary.failed[(0, 0)]
    assert "frames" in summary.failed[(1, 0)] and "several prompts" in summary.failed[(2, 0)]
    # an image checkpoint makes one frame
    with pytest.raises(InputError, match="frames = 5: an URSA image checkpoint makes 1 frame"):
        run(_job(T2I, prompts, tmp_path / "img", frames=5, width=64, height=48, steps=1))
    assert not os.path.exists(tmp_path / "img")
    with pytest.raises(InputError, match="width = 50; expected a positive multiple of 8 pixels"):
        run(_job(T2V, prompts, tmp_path / "w", **{**SMALL_VIDEO, "width": 50}))
    # URSA options on a NOVA checkpoint
    from conftest import GOLDEN

    with pytest.raises(InputError, match="--width: URSA options"):
        run(_job(os.path.join(GOLDEN, "t2v_tiny"), prompts, tmp_path / "nova", width=64))


def test_cli_leaves_steps_and_cfg_to_the_family(tmp_path):
    from nova.__main__ import build_parser
    from nova.batch.cli import job_from_args

    args = build_parser().parse_args(["batch", "--model", T2I, "--prompts", "p.txt", "--out", "o", "--width", "64"])
    job = job_from_args(args)
    assert job.options["steps"] is None and job.options["cfg"] is None and job.options["width"] == 64
    args = build_parser().parse_args(["batch", "--model", T2I, "--prompts", "p.txt", "--out", "o", "--steps", "3"])
    assert job_from_args(args).options["steps"] == 3


def test_command_line(tmp_path):
    import subprocess
    import sys

    _write(tmp_path / "p.txt", ["a cup"])
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    common = [
        sys.executable,
        "-m",
        "nova",
        "batch",
        "--model",
        T2I,
        "--prompts",
        "p.txt",
        "--device",
        "cpu",
        "--width",
        "32",
        "--height",
        "32",
        "--steps",
        "1",
    ]
    r = subprocess.run([*common, "--out", "o"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "1 of 1 outputs in o" in r.stderr and os.path.isfile(tmp_path / "o" / "00000-0.png")
    args = next(x for x in manifest.read(str(tmp_path / "o" / manifest.NAME)) if x["kind"] == "run")["args"]
    assert (args["steps"], args["cfg"], args["width"]) == (1, 7.0, 32)
    r = subprocess.run(
        [*common, "--out", "w", "--motion-flow", "3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "--motion-flow: NOVA options" in r.stderr and not os.path.exists(tmp_path / "w")
