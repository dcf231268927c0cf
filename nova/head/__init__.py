"""The per-token diffusion head in its three forms, one beside the other.

- the network: ``nova/models/diffusion_mlp.py`` (``DiffusionMLP``, the official state-dict keys), what
  the reference path runs step by step through the diffusers scheduler;
- ``prepared``: ``HeadPlan``, the same head as plain tensors (AdaLN modulations of every diffusion
  step in one product, transposed weights for ``addmm``), what the default fast path runs;
- ``triton`` and ``triton_kernels``: the prepared head's step as fused Triton kernels, a speed mode
  (``Accel.triton_head``) offered only once a GPU run shows it faster (nova/speed/options.py).

The loop that drives a form over a set step's tokens is nova/sampling/fast.py (``denoise_tokens``,
``GraphedLoop``).
"""
