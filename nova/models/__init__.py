"""NOVA networks, weight-compatible with the official ``diffnext`` state dicts."""
