"""`python -m nova batch`: same outputs in 1 or 2 processes and at any batch size, resumable after
SIGKILL, failures reported, the layouts (tiny checkpoints, few steps)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT
from tolerances import assert_frames_close, assert_latents_close

from nova.batch import manifest
from nova.batch.items import OPTIONS, plan_batches, read_items, share, unit_seed
from nova.batch.layouts import check_collisions, output_path
from nova.batch.runner import BatchJob, run
from nova.errors import InputError

FAST = {"frames": 1, "steps": 4, "diffusion_steps": 2}
PROMPTS = [
    "a red fox runs through snow",
    "a cat, a dog, and a bird",
    "waves crash on a rocky beach",
    "niagara falls at sunset",
    "a hot air balloon over green hills",
]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models are bound by per-op overhead: a second thread only adds synchronisation, which
    costs seconds on a busy machine. (torchrun gives its workers one thread too.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _job(model, prompts, out, **kw):
    options = {o.key: o.default for o in OPTIONS}
    options.update({k: kw.pop(k) for k in list(kw) if k in options})
    kw.setdefault("device", "cpu")  # (gloo and CPU results on any machine)
    return BatchJob(model, str(prompts), str(out), options=options, **kw)


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _cli(args, **popen):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def _outputs(out):
    """Output files (relative paths), without the run's own files."""
    found = set()
    for folder, _, files in os.walk(out):
        rel = os.path.relpath(folder, out)
        if rel.split(os.sep)[0] in ("logs", ".partial"):
            continue
        found |= {os.path.normpath(os.path.join(rel, f)) for f in files}
    return found - {manifest.NAME, "prompt_embeds.safetensors", ".lock"}


def _mp4_frames(path):
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _png(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _done_lines(out):
    return [r for r in manifest.read(os.path.join(out, manifest.NAME)) if r["kind"] == "done"]


def test_torchrun_two_processes_match_one(tiny_video, tmp_path):
    prompts = _write(tmp_path / "prompts.txt", PROMPTS)
    args = [
        "--model",
        tiny_video,
        "--prompts",
        str(prompts),
        "--samples",
        "2",
        "--frames",
        "1",
        "--steps",
        "4",
        "--diffusion-steps",
        "2",
        "--device",
        "cpu",
    ]
    proc = _cli(
        [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "nova",
            "batch",
            *args,
            "--out",
            str(tmp_path / "two"),
        ]
    )
    one = run(_job(tiny_video, prompts, tmp_path / "one", samples=2, **FAST))  # meanwhile, in this process
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert one.exit_code == 0 and one.done == 10
    names = {f"{i:05d}-{s}.mp4" for i in range(5) for s in range(2)}
    assert _outputs(tmp_path / "one") == names and _outputs(tmp_path / "two") == names
    lines = {w: {r["path"]: r for r in _done_lines(tmp_path / w)} for w in ("one", "two")}
    assert {r["rank"] for r in lines["two"].values()} == {0, 1}  # both processes worked
    for name in sorted(names):
        assert lines["one"][name]["seed"] == lines["two"][name]["seed"]
        a, b = _mp4_frames(tmp_path / "one" / name), _mp4_frames(tmp_path / "two" / name)
        assert a.shape == (1, 64, 96, 3) and np.array_equal(a, b), name
    assert os.path.isfile(tmp_path / "two" / "logs" / "rank-1.log")
    # different seeds per sample: the two samples of a prompt differ
    assert not np.array_equal(
        _mp4_frames(tmp_path / "one" / "00000-0.mp4"), _mp4_frames(tmp_path / "one" / "00000-1.mp4")
    )


def test_sigkill_then_resume_ends_with_the_full_set(tiny_image, tmp_path):
    prompts = _write(tmp_path / "prompts.txt", [f"{p} number {i}" for i in range(6) for p in PROMPTS[:4]])
    out = tmp_path / "out"
    cmd = [
        "-m",
        "nova",
        "batch",
        "--model",
        tiny_image,
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--steps",
        "8",
        "--diffusion-steps",
        "4",
    ]
    proc = _cli(cmd, start_new_session=True)
    deadline = time.time() + 120
    while len(_done_lines(out)) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    killed_at = len(_done_lines(out))
    assert 3 <= killed_at < 24, killed_at  # killed mid-run

    job = _job(tiny_image, prompts, out, steps=8, diffusion_steps=4)
    assert run(job).exit_code == 0  # the rerun (in this process)
    names = {f"{i:05d}-0.png" for i in range(24)}
    assert _outputs(out) == names and not os.path.exists(out / ".partial")
    lines = _done_lines(out)
    assert sorted(r["path"] for r in lines) == sorted(names)  # one line per output, no duplicates
    for r in lines:
        assert manifest_sha(out / r["path"]) == r["sha256"]

    mtimes = {n: os.stat(out / n).st_mtime_ns for n in names}
    assert run(job).exit_code == 0  # a second rerun: nothing to do
    assert len(_done_lines(out)) == 24 and {n: os.stat(out / n).st_mtime_ns for n in names} == mtimes
    log = (out / "logs" / "rank-0.log").read_text()
    assert log.count("encoded 24 prompts") == 1 and "encoded" not in log.split("encoded 24 prompts")[1]  # Phi-2 once

    job.options["diffusion_steps"] = 3  # other arguments: refused, naming the difference
    with pytest.raises(InputError, match="--diffusion-steps was 4, now 3"):
        run(job)


def manifest_sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_per_sample_generators_batch_of_two_matches_batch_of_one(tiny_video_pipe):
    from nova.components.text_encoder import PromptEmbeds
    from nova.sampling.fast import Accel
    from nova.sampling.plan import GenerationPlan, Segment
    from nova.sampling.sampler import SamplerSettings, new_generator

    pipe = tiny_video_pipe
    settings = SamplerSettings(4, 2, 5.0)
    embeds = [pipe.encode_prompt([p]) for p in PROMPTS[:2]]
    both = PromptEmbeds.cat(embeds)
    for accel in (Accel(), Accel.plain()):

        def sample(prompts, gens, accel=accel):
            return GenerationPlan(pipe.transformer, pipe.scheduler, settings, [Segment(prompts, 2)], accel=accel).run(
                gens
            )

        pair = sample(both, [new_generator(7), new_generator(8)])
        for i, seed in enumerate((7, 8)):
            alone = sample(embeds[i], new_generator(seed))
            assert torch.equal(sample(embeds[i], [new_generator(seed)]), alone)  # a list of one draws the same
            assert_latents_close(pair[i : i + 1], alone, flow_matching=False)
        assert not torch.allclose(pair[0], pair[1])


def _run_capturing(job, monkeypatch):
    """Run ``job`` in this process; returns the latents the runner decoded into each output file
    (an MP4 is lossy: H.264 can turn a one-level pixel difference into a larger one)."""
    import nova.batch.runner

    seen = {}
    write = nova.batch.runner._Worker._write

    def spy(self, prepared, latents, seconds):
        seen[prepared.path] = latents.clone()
        return write(self, prepared, latents, seconds)

    monkeypatch.setattr(nova.batch.runner._Worker, "_write", spy)
    assert run(job).exit_code == 0
    return seen


def _assert_same_videos(pipe, batched, alone):
    """Golden tolerances on the latents and on the decoded frames."""
    from nova.pipeline import pixels_to_uint8

    assert sorted(batched) == sorted(alone)
    for name in alone:
        assert_latents_close(batched[name], alone[name], flow_matching=False)
        assert_frames_close(
            pixels_to_uint8(pipe.decode_latents(batched[name])), pixels_to_uint8(pipe.decode_latents(alone[name]))
        )


def test_batch_size_two_gives_the_same_videos(tiny_video, tiny_video_pipe, tmp_path, monkeypatch):
    prompts = _write(tmp_path / "prompts.txt", PROMPTS[:3])
    runs = {
        size: _run_capturing(
            _job(tiny_video, prompts, tmp_path / f"b{size}", samples=2, batch_size=size, **FAST), monkeypatch
        )
        for size in (1, 2)
    }
    assert len(runs[1]) == 6 and _outputs(tmp_path / "b1") == _outputs(tmp_path / "b2") == set(runs[1])
    _assert_same_videos(tiny_video_pipe, runs[2], runs[1])


def test_failing_items_are_recorded_and_the_others_complete(tiny_video, tmp_path):
    from nova.__main__ import main

    lines = [
        json.dumps({"prompt": PROMPTS[0]}),
        json.dumps({"prompt": PROMPTS[1], "image": "missing.png", "frames": 5}),
        json.dumps({"prompt": PROMPTS[2], "frames": 10}),
        "{not json",
        json.dumps({"prompt": PROMPTS[3], "stepz": 3}),
        json.dumps({"prompt": PROMPTS[4], "name": "balloon", "fps": 8}),
        json.dumps({"prompt": PROMPTS[:2], "name": "two-segments", "frames": 5}),
    ]
    prompts = _write(tmp_path / "prompts.jsonl", lines)
    argv = [
        "batch",
        "--model",
        tiny_video,
        "--prompts",
        str(prompts),
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
        "--frames",
        "1",
        "--steps",
        "4",
        "--diffusion-steps",
        "2",
        "--batch-size",
        "2",
    ]
    assert main(argv) == 1
    assert _outputs(tmp_path / "out") == {"00000-0.mp4", "balloon-0.mp4", "two-segments-0.mp4"}
    assert _mp4_frames(tmp_path / "out" / "two-segments-0.mp4").shape == (5, 64, 96, 3)
    records = manifest.read(str(tmp_path / "out" / manifest.NAME))
    errors = {k[0]: r["error"] for k, r in manifest.failed(records).items()}
    assert sorted(errors) == [1, 2, 3, 4]
    assert "image " in errors[1] and "missing.png: no such file" in errors[1] and "InputError" not in errors[1]
    assert "1 + 4k" in errors[2]
    assert "line 4" in errors[3] and "not valid JSON" in errors[3]
    assert "'stepz'" in errors[4]
    # a rerun retries the failed items only (they fail again) and keeps the good ones
    before = len(_done_lines(tmp_path / "out"))
    assert main(argv) == 1 and len(_done_lines(tmp_path / "out")) == before


def test_geneval_layout(tiny_image, tiny_video, tmp_path):
    items = [
        {"tag": "single_object", "include": [{"class": "fox", "count": 1}], "prompt": "a photo of a fox"},
        {"tag": "two_object", "include": [{"class": "cat", "count": 1}], "prompt": "a photo of a cat and a bird"},
    ]
    prompts = _write(tmp_path / "meta.jsonl", [json.dumps(i) for i in items])
    assert run(_job(tiny_image, prompts, tmp_path / "out", samples=2, layout="geneval", **FAST)).exit_code == 0
    out = tmp_path / "out"
    assert _outputs(out) == {
        os.path.join(f"{i:05d}", f)
        for i in range(2)
        for f in ("metadata.jsonl", "samples/0000.png", "samples/0001.png")
    }
    assert json.loads((out / "00001" / "metadata.jsonl").read_text()) == items[1]
    assert _png(out / "00000" / "samples" / "0001.png").shape == (64, 64, 3)
    with pytest.raises(InputError, match="video checkpoint"):
        run(_job(tiny_video, prompts, tmp_path / "v", layout="geneval"))


def test_items_seeds_names_and_plan(tmp_path):
    items = read_items(
        str(_write(tmp_path / "p.jsonl", [json.dumps({"prompt": "a", "seed": 40}), "", json.dumps({"prompt": "b"})])),
        {o.key: o.default for o in OPTIONS},
    )
    assert [i.index for i in items] == [0, 1] and items[1].line == 3
    assert unit_seed(0, items[0], 2) == 42  # an item's own seed counts up with the sample
    assert unit_seed(0, items[1], 0) != unit_seed(1, items[1], 0) != unit_seed(0, items[1], 1)
    assert output_path(items[1], 3, "vbench", True) == "b-3.mp4"
    with pytest.raises(InputError, match="two items would write the same file"):
        check_collisions(
            read_items(str(_write(tmp_path / "d.txt", ["x", "x"])), {o.key: o.default for o in OPTIONS}), "vbench", True
        )
    pickle = tmp_path / "prompts.pkl"
    pickle.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(InputError, match="never unpickles"):
        read_items(str(pickle), {})
    # the plan does not depend on the number of processes; shares cover it exactly once
    many = read_items(str(_write(tmp_path / "m.txt", [f"p{i}" for i in range(7)])), {o.key: o.default for o in OPTIONS})
    plan = plan_batches(many, 3, 4, 0)
    assert [len(b) for b in plan] == [4, 4, 4, 4, 4, 1]
    for world in (1, 2, 3):
        shares = [share(plan, set(), r, world) for r in range(world)]
        assert sorted(u.key for s in shares for b in s for u in b) == sorted(u.key for b in plan for u in b)
    resumed = share(plan, {(0, 0), (0, 1)}, 0, 1)
    assert [u.key for u in resumed[0]] == [(0, 2), (1, 0)]  # done units leave their batch, the rest stays together


def test_image_to_video_batched_like_alone(tiny_video, tiny_video_pipe, tmp_path, monkeypatch):
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(tmp_path / "first.png")
    prompts = _write(tmp_path / "i2v.jsonl", [json.dumps({"prompt": PROMPTS[0], "image": "first.png", "name": "fox"})])
    runs = {
        size: _run_capturing(
            _job(
                tiny_video,
                prompts,
                tmp_path / f"b{size}",
                samples=2,
                batch_size=size,
                frames=5,
                steps=4,
                diffusion_steps=2,
            ),
            monkeypatch,
        )
        for size in (1, 2)
    }
    assert sorted(runs[1]) == ["fox-0.mp4", "fox-1.mp4"] and _mp4_frames(tmp_path / "b2" / "fox-0.mp4").shape == (
        5,
        64,
        96,
        3,
    )
    _assert_same_videos(tiny_video_pipe, runs[2], runs[1])
    # the first latent frame is the image's posterior sample, drawn from each sample's own generator
    for name in runs[1]:
        assert torch.equal(runs[2][name][:, :, 0], runs[1][name][:, :, 0])
    assert not torch.equal(runs[1]["fox-0.mp4"][:, :, 0], runs[1]["fox-1.mp4"][:, :, 0])


def test_progress_line_follows_the_manifest(tmp_path):
    from nova.batch.progress import ProgressBar

    path = str(tmp_path / manifest.NAME)
    manifest.append(path, {"kind": "run", "args": {}})
    bar = ProgressBar(path, total=10, done_before=2)
    for record in ({"kind": "done", "item": 2, "sample": 0}, {"kind": "failed", "item": 3, "sample": 0, "error": "x"}):
        manifest.append(path, record)
    with open(path, "ab") as f:
        f.write(b'{"kind": "done", "item": 4')  # a line being written: read once it is complete
    bar._read_new()
    line = bar.line()
    assert "4/10 videos, 1 failed" in line and "videos/hour" in line and "ETA" in line
    assert len(manifest.read(path)) == 3  # the torn line is skipped
    manifest.repair(path)
    manifest.append(path, {"kind": "done", "item": 4, "sample": 0})
    assert [r.get("item") for r in manifest.read(path)] == [None, 2, 3, 4]


def test_masked_items_match_the_pipeline(tiny_image, tmp_path, monkeypatch):
    from PIL import Image

    from nova import NovaPipeline
    from nova.sampling.sampler import new_generator

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "src.png")
    mask = np.zeros((64, 64, 3), np.uint8)
    mask[:, :32] = 255  # repaint the left half
    Image.fromarray(mask).save(tmp_path / "mask.png")
    prompts = _write(tmp_path / "m.jsonl", [json.dumps({"prompt": PROMPTS[0], "image": "src.png", "mask": "mask.png"})])
    seen = _run_capturing(
        _job(tiny_image, prompts, tmp_path / "out", samples=2, batch_size=2, steps=4, diffusion_steps=2), monkeypatch
    )
    seeds = {r["path"]: r["seed"] for r in _done_lines(tmp_path / "out")}
    pipe = NovaPipeline.from_pretrained(tiny_image, device="cpu")
    for name in ("00000-0.png", "00000-1.png"):
        expected = pipe(
            PROMPTS[0],
            image=_png(tmp_path / "src.png"),
            mask=torch.from_numpy(mask[..., 0] / 255.0)[None].float(),
            num_inference_steps=4,
            num_diffusion_steps=2,
            generator=new_generator(seeds[name]),
            output_type="latent",
        ).images
        assert_latents_close(seen[name], expected, flow_matching=True)


def test_units_with_and_without_a_negative_prompt_are_batched_apart(tiny_image, tmp_path):
    """Review 3: a mix was planned into one batch, whose forward always failed and was rerun one
    unit at a time."""
    lines = [
        json.dumps({"prompt": PROMPTS[0], "negative_prompt": "blurry"}),
        json.dumps({"prompt": PROMPTS[1]}),
        json.dumps({"prompt": PROMPTS[2], "negative_prompt": "dark"}),
        json.dumps({"prompt": PROMPTS[3], "negative_prompt": "ignored without guidance", "cfg": 1.0}),
        json.dumps({"prompt": PROMPTS[4], "cfg": 1.0}),
    ]
    prompts = _write(tmp_path / "neg.jsonl", lines)
    items = read_items(str(prompts), {o.key: o.default for o in OPTIONS})
    plan = plan_batches(items, 1, 4, 0)
    assert [[u.item.index for u in b] for b in plan] == [[0, 2], [1], [3, 4]]
    summary = run(_job(tiny_image, prompts, tmp_path / "out", batch_size=4, **FAST))
    assert summary.exit_code == 0 and summary.done == 5
    rank_log = (tmp_path / "out" / "logs" / "rank-0.log").read_text()
    assert "this process makes 5 in 3 batches" in rank_log and "retrying its units one by one" not in rank_log, rank_log


def test_batch_device_is_checked(tiny_image, tmp_path):
    """Review 4: a device this machine lacks was a raw AssertionError from torch."""
    from nova.batch.distributed import pick_device

    missing = "cuda:99" if torch.cuda.is_available() else "cuda:0"
    with pytest.raises(InputError, match=f"device = '{missing}'"):
        pick_device(missing, 0)
    with pytest.raises(InputError, match="device = 'banana' is not a device name"):
        pick_device("banana", 0)
    prompts = _write(tmp_path / "p.txt", PROMPTS[:1])
    with pytest.raises(InputError, match=f"device = '{missing}'"):
        run(_job(tiny_image, prompts, tmp_path / "out", device=missing, **FAST))
    assert pick_device(None, 0) == __import__("nova.devices").devices.default_device()


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_early_failures_close_the_process_group_and_the_progress_thread(tiny_image, tmp_path, monkeypatch):
    """Review 8: World.start ran before the try that closes it (a bad output folder left the
    process group open), and the progress thread started before the try that stops it."""
    import threading

    import torch.distributed as dist

    from nova.batch import embed_cache

    for key, value in {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }.items():
        monkeypatch.setenv(key, value)
    prompts = _write(tmp_path / "p.txt", PROMPTS[:1])
    (tmp_path / "a-file").write_text("x")
    try:
        with pytest.raises(OSError):
            run(_job(tiny_image, prompts, tmp_path / "a-file" / "out", **FAST))
        assert not dist.is_initialized()

        def broken_cache(*args, **kwargs):
            raise InputError("prompt_embeds.safetensors: a broken cache (test)")

        monkeypatch.setattr(embed_cache, "load", broken_cache)
        with pytest.raises(InputError, match="a broken cache"):
            run(_job(tiny_image, prompts, tmp_path / "out", **FAST))
        assert not dist.is_initialized()
        assert not [t for t in threading.enumerate() if t.name == "nova-batch-progress" and t.is_alive()]
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_speed_mode_is_part_of_the_run_identity(tmp_path):
    """A mode that changes the latents changes which files a rerun may keep; the default adds
    nothing (the identities of runs made before the modes existed stay valid)."""
    prompts = _write(tmp_path / "p.txt", PROMPTS[:1])
    default = _job("m", prompts, tmp_path / "out").identity()
    assert "attention" not in default and "fp8_matmuls" not in default
    lossy = _job("m", prompts, tmp_path / "out", fp8_matmuls=True, attention="math").identity()
    assert lossy == {**default, "attention": "math", "fp8_matmuls": True}
    with pytest.raises(InputError, match="fp8 matmuls is not offered"):
        run(_job("m", prompts, tmp_path / "out", fp8_matmuls=True, reference=True))
    assert not (tmp_path / "out").exists()  # refused before any folder is made


# -- refused before any work, and what a run identifies itself by ---------------------------------
@pytest.mark.parametrize(
    "option,value,match",
    [
        ("frames", 0, "frames = 0; the video VAE needs 1 \\+ 4k"),
        ("frames", 10, "frames = 10; the video VAE needs 1 \\+ 4k"),
        ("fps", 0.0, "fps = 0.0; expected a finite number > 0"),
        ("fps", 0.0004, "fps = 0.0004; expected 1 .. 120"),
        ("steps", 0, "num_inference_steps = 0"),
        ("mask_grow", 10**9, r"--mask-grow = 1000000000; expected an integer in \[0, 64\]"),
        ("feather", 10**9, r"--feather = 1000000000; expected an integer in \[0, 256\]"),
        ("image", "missing.png", "--image .*missing.png: no such file"),
    ],
)
def test_bad_run_wide_default_is_refused_before_anything(tiny_video, tmp_path, monkeypatch, option, value, match):
    from nova.components.text_encoder import TextEncoder

    def encode(*args, **kwargs):
        raise AssertionError("a prompt was encoded before the bad default was reported")

    monkeypatch.setattr(TextEncoder, "from_folders", classmethod(encode))
    prompts = _write(tmp_path / "p.txt", PROMPTS[:2])
    value = str(tmp_path / value) if option == "image" else value
    with pytest.raises(InputError, match=match):
        run(_job(tiny_video, prompts, tmp_path / "out", **{**FAST, option: value}))
    assert not os.path.exists(tmp_path / "out")  # no folder, no logs/rank-0.log


def test_jsonl_frames_zero_is_refused_not_33(tiny_video, tmp_path):
    prompts = _write(
        tmp_path / "p.jsonl",
        [
            json.dumps({"prompt": "a fox", "frames": 0}),
            json.dumps({"prompt": "a cat", "mask_grow": 10**9}),
            json.dumps({"prompt": "a dog", "frames": 1}),
        ],
    )
    items = read_items(str(prompts), {o.key: o.default for o in OPTIONS})
    assert "line 1: frames = 0; the video VAE needs 1 + 4k" in items[0].error
    assert "line 2: mask_grow = 1000000000; expected an integer in [0, 64]" in items[1].error
    assert items[2].error is None
    summary = run(_job(tiny_video, prompts, tmp_path / "out", steps=4, diffusion_steps=2))
    assert summary.done == 1 and "frames = 0" in summary.failed[(0, 0)]


def test_prompt_files_split_only_at_newlines(tmp_path):
    defaults = {o.key: o.default for o in OPTIONS}
    text = tmp_path / "p.txt"
    text.write_bytes("a fox\u2028in snow\r\na cat\x0con a mat\nlast".encode())
    prompts = [i.prompts for i in read_items(str(text), defaults)]
    assert prompts == [("a fox\u2028in snow",), ("a cat\x0con a mat",), ("last",)]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        json.dumps({"prompt": "a fox\u2028in snow"}, ensure_ascii=False) + "\n" + json.dumps({"prompt": "b"}) + "\n",
        encoding="utf-8",
    )
    items = read_items(str(jsonl), defaults)
    got = [(i.index, i.line, i.prompts, i.error) for i in items]
    assert got == [(0, 1, ("a fox\u2028in snow",), None), (1, 2, ("b",), None)]


def test_a_prompt_named_like_a_reserved_safetensors_key(tiny_image, tmp_path):
    prompts = _write(tmp_path / "p.txt", ["__metadata__", "a fox"])
    job = _job(tiny_image, prompts, tmp_path / "out", steps=4, diffusion_steps=2)
    assert run(job).exit_code == 0 and run(job).exit_code == 0  # and the resume reads the cache


def test_manifest_line_without_item_or_sample_is_named(tiny_image, tmp_path):
    prompts = _write(tmp_path / "p.txt", ["a fox"])
    job = _job(tiny_image, prompts, tmp_path / "out", steps=4, diffusion_steps=2)
    assert run(job).exit_code == 0
    with open(tmp_path / "out" / manifest.NAME, "a", encoding="utf-8") as f:
        f.write(json.dumps({"kind": "done", "item": 0}) + "\n")
    with pytest.raises(
        InputError,
        match=r"manifest.jsonl line 3: a 'done' record with sample = None; "
        r"it needs item \(int\), sample \(int\)",
    ):
        run(job)


def test_run_identity_includes_the_weights(tiny_image, tmp_path):
    import shutil

    from nova.components.tiny import make_tiny

    model = tmp_path / "model"
    shutil.copytree(tiny_image, model)
    prompts = _write(tmp_path / "p.txt", ["a fox"])
    job = _job(str(model), prompts, tmp_path / "out", steps=4, diffusion_steps=2)
    assert run(job).exit_code == 0
    other = make_tiny(str(tmp_path / "other"), preset="image", seed=5)  # same layout, other values
    shutil.copy(
        os.path.join(other, "transformer", "diffusion_pytorch_model.safetensors"),
        model / "transformer" / "diffusion_pytorch_model.safetensors",
    )
    with pytest.raises(InputError, match="the checkpoint's weights"):
        run(job)


def test_one_run_per_output_folder(tiny_image, tmp_path):
    prompts = _write(tmp_path / "p.txt", ["a fox"])
    out = tmp_path / "out"
    out.mkdir()
    code = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.lockf(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(out / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        job = _job(tiny_image, prompts, out, steps=4, diffusion_steps=2)
        with pytest.raises(InputError, match="another batch run is writing to this folder"):
            run(job)
        assert os.path.isdir(out) and not os.path.exists(out / manifest.NAME)  # its folder stays, untouched
    finally:
        holder.kill()
        holder.wait()
    assert run(job).exit_code == 0  # a killed holder leaves nothing stuck


def test_early_failure_leaves_no_folder(tiny_image, tmp_path, monkeypatch):
    from nova.pipeline import NovaPipeline

    def broken(*args, **kwargs):
        raise InputError("weights unreadable (test)")

    monkeypatch.setattr(NovaPipeline, "from_pretrained", classmethod(broken))
    prompts = _write(tmp_path / "p.txt", ["a fox"])
    with pytest.raises(InputError, match="weights unreadable"):
        run(_job(tiny_image, prompts, tmp_path / "out", steps=4, diffusion_steps=2))
    assert not os.path.exists(tmp_path / "out")


def test_item_with_more_prompts_than_latent_frames_fails_before_any_work(tiny_video, tmp_path, monkeypatch):
    from nova.components.text_encoder import TextEncoder
    from nova.pipeline import NovaPipeline

    def work(*args, **kwargs):
        raise AssertionError("work was done for an item that cannot be generated")

    monkeypatch.setattr(TextEncoder, "from_folders", classmethod(work))
    monkeypatch.setattr(NovaPipeline, "from_pretrained", classmethod(work))
    prompts = _write(tmp_path / "p.jsonl", [json.dumps({"prompt": ["a", "b", "c"], "frames": 5})])
    summary = run(_job(tiny_video, prompts, tmp_path / "out", steps=4, diffusion_steps=2))
    assert summary.done == 0 and "line 1: 3 prompt(s) need at least 3 new latent frames" in summary.failed[(0, 0)]


def test_full_disk_stops_the_run_and_names_the_output(tiny_image, tmp_path, monkeypatch):
    import errno

    from PIL import Image

    saves = []

    def disk_full(*args, **kwargs):
        saves.append(args)
        raise OSError(errno.ENOSPC, "No space left on device")

    prompts = _write(tmp_path / "p.txt", PROMPTS[:3])
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(
        InputError,
        match=(
            "the disk is full .*00000-0.png: could not write the file "
            r"\(No space left on device\).*stopped"
        ),
    ):
        run(_job(tiny_image, prompts, out, steps=4, diffusion_steps=2))
    assert len(saves) == 1  # not every unit sampled and refused in turn
    failed = [r for r in manifest.read(str(out / manifest.NAME)) if r["kind"] == "failed"]
    assert len(failed) == 1 and ".partial" not in failed[0]["error"] and "00000-0.png" in failed[0]["error"]


def test_item_with_a_bad_mask_or_clip_fails_before_any_work(tiny_video, tmp_path, monkeypatch):
    from PIL import Image

    from nova.components.text_encoder import TextEncoder
    from nova.io.media import write_video
    from nova.pipeline import NovaPipeline

    def work(*args, **kwargs):
        raise AssertionError("work was done for an item that cannot be generated")

    monkeypatch.setattr(TextEncoder, "from_folders", classmethod(work))
    monkeypatch.setattr(NovaPipeline, "from_pretrained", classmethod(work))
    write_video(np.zeros((9, 64, 96, 3), np.uint8), str(tmp_path / "clip9.mp4"))
    write_video(np.full((12, 64, 96, 3), 255, np.uint8), str(tmp_path / "mask12.mp4"))
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(tmp_path / "first.png")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "tiny.png")
    prompts = _write(
        tmp_path / "p.jsonl",
        [
            json.dumps({"prompt": "a", "video": "clip9.mp4", "mask": "mask12.mp4"}),
            json.dumps({"prompt": "b", "image": "first.png", "mask": "tiny.png"}),
            json.dumps({"prompt": "c", "video": "clip9.mp4", "frames": 5}),
        ],
    )
    summary = run(_job(tiny_video, prompts, tmp_path / "out", steps=4, diffusion_steps=2))
    assert summary.done == 0
    assert "mask12.mp4: has more frames than the 9 of video" in summary.failed[(0, 0)]
    assert "tiny.png is 2x2" in summary.failed[(1, 0)] and "cannot be mapped to the" in summary.failed[(1, 0)]
    assert "nothing is left to generate" in summary.failed[(2, 0)]


def _clip(path, frames, size=(64, 96)):
    """A clip of ``frames`` black frames; a .mkv header holds no frame count (it is counted)."""
    import av

    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        black = av.VideoFrame.from_ndarray(np.zeros((*size, 3), np.uint8), format="rgb24")
        for _ in range(frames):
            for packet in stream.encode(black):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)


def test_items_clips_are_checked_from_their_headers_before_any_work(tiny_video, tmp_path, monkeypatch):
    """video + mask without frames: the clip sets the length. Every item's clip is measured from
    its header (Matroska's packets counted) before a prompt is encoded or a weight loads, none
    decoded; a clip too long for any video, or too large to decode, fails its item naming the
    line and the file, and the other items run."""
    from PIL import Image

    import nova.io.media
    from nova.components.text_encoder import TextEncoder
    from nova.pipeline import NovaPipeline

    decoded, at_work = [], []
    real_read = nova.io.media._read_video
    monkeypatch.setattr(
        nova.io.media,
        "_read_video",
        lambda path, *a, **kw: decoded.append(os.path.basename(path)) or real_read(path, *a, **kw),
    )
    for cls, name in ((TextEncoder, "from_folders"), (NovaPipeline, "from_pretrained")):
        real = getattr(cls, name).__func__
        monkeypatch.setattr(
            cls, name, classmethod(lambda c, *a, _real=real, **kw: at_work.append(list(decoded)) or _real(c, *a, **kw))
        )
    monkeypatch.setattr(
        nova.io.media, "MAX_DECODED_BYTES", 30 * 64 * 96 * 3, raising=False
    )  # (a 40-frame clip stands for 1200 at 720p)
    _clip(tmp_path / "long.mp4", 16400, (16, 16))
    _clip(tmp_path / "wide.mkv", 40)
    _clip(tmp_path / "clip9.mkv", 9)
    Image.fromarray(np.full((64, 96, 3), 255, np.uint8)).save(tmp_path / "mask.png")
    prompts = _write(
        tmp_path / "p.jsonl",
        [
            json.dumps({"prompt": "a", "video": "clip9.mkv", "mask": "mask.png"}),
            json.dumps({"prompt": "b", "video": "long.mp4", "mask": "mask.png"}),
            json.dumps({"prompt": "c", "video": "wide.mkv", "mask": "mask.png"}),
        ],
    )
    summary = run(_job(tiny_video, prompts, tmp_path / "out", steps=4, diffusion_steps=2))
    assert at_work and at_work[0] == []  # nothing decoded before the first prompt was encoded
    assert summary.done == 1 and decoded == ["clip9.mkv"]  # (the good item's clip, when its unit ran)
    assert "line 2: video " in summary.failed[(1, 0)] and "long.mp4: more than 16381 frames" in summary.failed[(1, 0)]
    assert "line 3: video " in summary.failed[(2, 0)]
    assert "wide.mkv: 40 frames of 96x64 decode to 0.7 MiB; at most 0.5 MiB" in summary.failed[(2, 0)]


def test_run_wide_mask_for_items_that_give_their_image(tiny_image, tmp_path):
    """The run-wide defaults are checked value by value; how they combine is each item's."""
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(tmp_path / "mask.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "first.png")
    prompts = _write(
        tmp_path / "p.jsonl", [json.dumps({"prompt": "a", "image": "first.png"}), json.dumps({"prompt": "b"})]
    )
    summary = run(
        _job(tiny_image, prompts, tmp_path / "out", mask=str(tmp_path / "mask.png"), steps=4, diffusion_steps=2)
    )
    assert summary.done == 1 and "mask repaints one image or one video" in summary.failed[(1, 0)]
