"""The benchmark runs on a checkpoint in the hub layout (the golden ones), and bench/floor.py
records the matmul and attention calls of a run (the kernel floor of the report)."""

import json
import os
import sys

import pytest
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bench"))
from floor import kernel_floor  # noqa: E402

import bench  # noqa: E402


def test_bench_long_video_memory_is_flat_with_a_window(tmp_path):
    """--long tracks the temporal cache of every run (it wraps the frame loop's TemporalCache): with a
    window its K/V cache stays the same at 9, 33 and 65 latent frames; without one it grows."""
    folder = os.path.join(HERE, "golden", "t2v_tiny")
    args = ["--checkpoint", folder, "--steps", "2", "2", "--repeat", "1", "--quick", "--long", "--window", "3"]
    bench.main(args + ["--out", str(tmp_path)])
    long = json.loads((tmp_path / "cpu-mid-t2v_tiny.json").read_text())["long_video"]
    windowed = [long[n]["kv_cache_mb"] for n in ("9", "33", "65")]
    whole = [long[f"{n} (no window)"]["kv_cache_mb"] for n in ("9", "33", "65")]
    assert windowed[0] > 0 and windowed == [windowed[0]] * 3
    assert whole[0] > windowed[0] and whole[0] < whole[1] < whole[2]


@pytest.mark.parametrize("case", ["t2v_tiny", "t2i_tiny"])
def test_bench_on_a_checkpoint_folder(tmp_path, case):
    folder = os.path.join(HERE, "golden", case)
    bench.main(["--checkpoint", folder, "--steps", "2", "2", "--repeat", "1", "--out", str(tmp_path)])
    report = json.loads((tmp_path / f"cpu-mid-{case}.json").read_text())
    assert report["checkpoint"] == folder
    assert report["video_model"] is (case == "t2v_tiny")
    assert report["latents"] == (3 if case == "t2v_tiny" else 1)
    assert report["end_to_end"]["fast"]["max_diff_vs_plain_over_std"] < 1e-4
    assert set(report["stages"]) == {
        "temporal step",
        "spatial encoder",
        "diffusion head loop",
        "VAE decode",
        "text encode",
    }
    assert report["stages"]["spatial encoder"]["calls"] == 2 * report["latents"]
    floor = report["kernel_floor"]["fast"]
    assert floor["calls"] > 0 and 0 < floor["seconds"] and floor["measured_seconds"] > 0
    tiles = ["float32, tiles of 5 latents", "float32, tiles of 3 latents"] if case == "t2v_tiny" else ["float32"]
    assert list(report["vae_decode_tiles"])[: len(tiles)] == tiles
    text = (tmp_path / f"cpu-mid-{case}.md").read_text()
    assert ("- image: 1 latent" in text) is (case == "t2i_tiny")


def test_floor_records_every_kernel_call_with_its_layout():
    torch.manual_seed(0)
    lin = torch.nn.Linear(32, 96)
    x = torch.randn(2, 10, 32)

    def run():
        for _ in range(3):  # three identical calls: one distinct layout
            q, k, v = lin(x).view(2, 10, 3, 4, 8).permute(2, 0, 3, 1, 4).unbind(0)
            F.scaled_dot_product_attention(q, k, v)
        torch.mm(x[0], x[1].t())  # another op, another layout
        mask = torch.ones(10, 10, dtype=torch.bool).tril()
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # a boolean input is rebuilt too
        F.gelu(x)  # elementwise: not a kernel of the floor

    with torch.inference_mode():
        floor = kernel_floor(run, torch.device("cpu"))
    assert floor["calls"] == 8
    assert floor["distinct_calls"] == 4
    assert set(floor["by_op"]) == {"linear", "scaled_dot_product_attention", "mm"}
    assert floor["seconds"] > 0
    assert abs(sum(floor["by_op"].values()) - floor["seconds"]) < 1e-3


def test_precision_study_runs_every_golden_case_in_each_mode(tmp_path):
    import precision
    from conftest import golden_runs

    report = precision.main(["--skip-speed", "--out", str(tmp_path)])
    runs = len(golden_runs())
    assert [len(rows) for rows in report["golden"].values()] == [runs] * len(report["golden"])
    assert all(r["within"] for r in report["golden"]["float32"])
    # bf16 storage moves the sampled latents past the golden tolerances: the study must see it
    assert not all(r["within"] for r in report["golden"]["bf16 weights"])
    assert (tmp_path / "cpu-precision.md").read_text().count("| bf16 weights |") == runs


def test_profile_summary_of_a_checkpoint(tmp_path):
    import profile_run

    folder = os.path.join(HERE, "golden", "t2v_tiny")
    s = profile_run.main(["--checkpoint", folder, "--steps", "2", "2", "--latents", "2", "--out", str(tmp_path)])
    assert set(s["stages"]) == {"temporal step", "spatial encoder", "diffusion head loop"}
    assert s["stages"]["spatial encoder"]["calls"] == 2 * 2  # set steps x latents
    assert all(v["ms"] > 0 for v in s["stages"].values())
    assert s["set_steps"] == 4 and s["launches"] > 0 and s["launches_per_set_step"] == round(s["launches"] / 4, 1)
    assert s["top"] and all(r["ms"] > 0 and r["name"].startswith("aten::") for r in s["top"])
    text = (tmp_path / "profile-t2v_tiny.md").read_text()
    assert "| spatial encoder |" in text and "per set step" in text and "not applicable" in text


def test_speed_modes_report(tmp_path):
    """bench/speed_modes.py: every mode this CPU can run, against the default and its chaos floor."""
    import subprocess

    script = os.path.join(os.path.dirname(HERE), "bench", "speed_modes.py")
    subprocess.run(
        [
            sys.executable,
            script,
            "--preset",
            "cpu-mid",
            "--steps",
            "2",
            "2",
            "--repeat",
            "1",
            "--no-golden",
            "--out",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    report = json.loads((tmp_path / "speed-modes-cpu.json").read_text())
    rows = report["preset"]["rows"]
    assert rows["default"]["max_over_std"] == 0.0 and "default, one weight nudged by 1 ulp (chaos floor)" in rows
    assert rows["attention math"]["mean_over_std"] < 1e-3  # exact up to rounding
    fp8 = rows["fp8 matmuls (row-wise scales)"]
    assert fp8["mean_over_std"] > 1e-4 and fp8["seconds"] > 0  # a real, reported difference
    assert "fp8 matmuls (per-tensor scales, as on Ada)" in rows
    assert "attention efficient" in report["preset"]["not_run"] and "SageAttention" in report["preset"]["not_run"]
    text = (tmp_path / "speed-modes-cpu.md").read_text()
    assert "| fp8 matmuls (row-wise scales) |" in text and "chaos floor" in text


def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    """bench/gpu_check.py --smoke: every item runs or reports why not, and the report is written."""
    import subprocess

    script = os.path.join(os.path.dirname(HERE), "bench", "gpu_check.py")
    subprocess.run(
        [sys.executable, script, "--smoke", "--out", str(tmp_path)], check=True, capture_output=True, text=True
    )
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    items = report["items"]
    main = items["default vs per-step path"]
    assert main["latents_max_diff_over_std"] == 0.0 and set(main["best"]) == {"default", "per-step path (before)"}
    assert items["128/100 (cfg 7)"]["seconds"] > 0
    assert items["profile: default"]["set_steps"] > 0 and items["profile: per-step path"]["set_steps"] > 0
    modes = [k for k in items if k.startswith("mode: ")]
    assert len(modes) == 9 and all("seconds" in items[k] or "failed" in items[k] for k in modes)
    assert items["mode: fp8_matmuls"]["latents_max_diff_over_std"] > 0  # a real, reported difference
    for name in ("official vs default (osp480)", "sdxl1024: official vs default"):
        assert "best" in items[name] or "failed" in items[name]
    text = (tmp_path / "gpu-check.md").read_text()
    assert "| fp8_matmuls |" in text and "Default / before" in text
