"""The speed modes: other ways for the spatial encoder and the diffusion head to compute, each
measured against the default path before it is offered (``options``: which are offered, and the
CLI flags). ``spatial_kernels``: attention kernel choice, SageAttention, fp8 products, compiled
blocks. The diffusion head's Triton form is nova/head/triton.py (switched by ``Accel.triton_head``).
The default path itself (set steps replayed as CUDA graphs) is nova/sampling/fast.py and nova/sampling/set_step.py."""
