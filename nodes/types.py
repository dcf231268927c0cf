"""Custom socket types of the pack (ids are permanent: saved workflows store them)."""

from .compat import io

NovaModelType = io.Custom("NOVA_MODEL")
NovaTextEncoderType = io.Custom("NOVA_TEXT_ENCODER")
NovaVaeType = io.Custom("NOVA_VAE")
NovaSamplerType = io.Custom("NOVA_SAMPLER")
NovaSegmentsType = io.Custom("NOVA_SEGMENTS")
UrsaModelType = io.Custom("URSA_MODEL")
NovaKeyframesType = io.Custom("NOVA_KEYFRAMES")
