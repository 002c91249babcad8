"""Frame sources: where frames come from. One small module per kind, one interface (base.Source)."""
from .base import Source

__all__ = ["Source"]
