"""autoprune: automated compression search for BERT-family models under a latency budget."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load(directory: Any, **kwargs: Any) -> Any:
    """Load a compressed model written by ``autoprune export`` / ``compress.save``."""
    from autoprune.compress import load as _load

    return _load(directory, **kwargs)
