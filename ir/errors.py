"""The exceptions fusegrad raises for bad programs and bad input."""
from __future__ import annotations


class FusegradError(Exception):
    """Base class of every error fusegrad raises on purpose."""


class ShapeError(FusegradError, ValueError):
    """Shapes that do not fit the operation (broadcasting, matmul, reshape, axes)."""


class DTypeError(FusegradError, TypeError):
    """A dtype the operation does not accept (integers where floats are needed, ...)."""


class TraceError(FusegradError):
    """The function cannot be traced into a static graph."""


def located(message: str, source: str | None) -> str:
    return f"{message}\n  traced at {source}" if source else message
