"""Pixels and files: ``media`` reads and writes images and videos (headers checked before
decoding), ``images`` converts and fits single pictures, ``pixels`` turns ComfyUI-style frames into
the VAE's input, ``frames`` is the arithmetic between video frames and latent frames, ``latents``
checks latents handed in from outside.
"""
