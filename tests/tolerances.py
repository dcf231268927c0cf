"""The parity tolerances of tests/golden/README.md."""

import numpy as np
import torch


def assert_latents_close(actual, expected, flow_matching: bool):
    actual, expected = torch.as_tensor(actual).float(), torch.as_tensor(expected).float()
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = (actual - expected).abs() / expected.std()
    max_tol, mean_tol = (1e-3, 1e-4) if flow_matching else (2e-2, 1e-3)
    assert float(diff.max()) <= max_tol, f"max |diff|/std = {float(diff.max()):.3g} > {max_tol}"
    assert float(diff.mean()) <= mean_tol, f"mean |diff|/std = {float(diff.mean()):.3g} > {mean_tol}"


def assert_frames_close(actual, expected):
    actual = np.asarray(actual).astype(np.int32)
    expected = np.asarray(expected).astype(np.int32)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = np.abs(actual - expected)
    assert diff.mean() <= 0.5, f"mean |diff| = {diff.mean():.3f} > 0.5"
    assert (diff > 2).mean() <= 0.01, f"{(diff > 2).mean():.2%} of values off by > 2"


def assert_tensor_close(actual, expected):
    actual, expected = torch.as_tensor(actual).float(), torch.as_tensor(expected).float()
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    bound = 1e-4 * torch.clamp(expected.abs(), min=1.0)
    excess = (actual - expected).abs() - bound
    assert float(excess.max()) <= 0, f"max |diff| exceeds 1e-4*max(1,|expected|) by {float(excess.max()):.3g}"
