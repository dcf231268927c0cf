"""``nova batch``: prompts x samples into a folder, in one process or many (torchrun, accelerate).

``cli`` parses the subcommand without importing torch; ``items`` reads the prompt file into items
and units (one video each) and splits them into batches; ``runner`` runs them (prompt embeddings
cached by ``embed_cache``, one line per finished unit in the ``manifest``, file names from
``layouts``, ``distributed`` for the process group, ``progress`` for the log lines).
"""

from .._exports import lazy_exports

# What ``nova.batch`` (a module until 0.2) handed out.
_EXPORTS = {
    "runner": ("BatchJob", "BatchSummary", "run"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
