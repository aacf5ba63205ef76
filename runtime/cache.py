"""Where compiled kernels live on disk (API.md: ~/.cache/fusegrad, FUSEGRAD_CACHE_DIR)."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_OFF = {"off", "0", "false", "no", ""}


def cache_dir() -> Path | None:
    """The kernel cache directory, or None when the disk cache is turned off."""
    setting = os.environ.get("FUSEGRAD_CACHE_DIR")
    if setting is not None:
        return None if setting.strip().lower() in _OFF else Path(setting).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fusegrad"


_scratch: Path | None = None


def source_dir() -> Path:
    """Where kernel source files are written: the cache, or a private temporary
    directory when caching is off (Numba needs a real file to compile from, and
    tracebacks need real lines)."""
    global _scratch
    directory = cache_dir()
    if directory is None:
        if _scratch is None:
            _scratch = Path(tempfile.mkdtemp(prefix="fusegrad-"))
            # Numba still writes its cache files next to the sources (the kernels say
            # cache=True): without this, every process left a directory in /tmp.
            atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
        return _scratch
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def cache_size(directory: Path | None = None) -> int:
    directory = directory or cache_dir()
    if directory is None or not directory.exists():
        return 0
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
