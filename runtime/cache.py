"""Where compiled kernels live on disk (~/.cache/fusegrad, FUSEGRAD_CACHE_DIR: the README),
what happens when that place cannot be used, and how big it may grow.

A disk cache is an optimisation, never a requirement: when the directory is a file,
read-only, full or deleted under a running process, fusegrad warns once and compiles
the rest of the process's kernels in memory (runtime/loader.py).
"""
from __future__ import annotations

import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

_OFF = {"off", "0", "false", "no", ""}
DEFAULT_MAX_BYTES = 1 << 30  # FUSEGRAD_CACHE_MAX_BYTES
# How many new kernel files a process writes between two looks at the cache's size
# (the first new kernel always looks): scanning the directory costs a stat per file.
EVICTION_INTERVAL = 64
# A temporary file older than this was left by a process that died while writing it.
STALE_TEMPORARY_SECONDS = 3600
# The files of one kernel: its source k_<digest>.py, and under __pycache__ Numba's
# index and data files (k_<digest>.<function>-<line>.py311.nbi, ...).
_KERNEL_FILE = re.compile(r"^(k_[0-9a-f]{20})\.")
_PYCACHE = "__pycache__"


class CacheWarning(UserWarning):
    """The kernel cache could not be used as it is; fusegrad went on without it."""


def cache_dir() -> Path | None:
    """The kernel cache directory, or None when the disk cache is turned off."""
    setting = os.environ.get("FUSEGRAD_CACHE_DIR")
    if setting is not None:
        return None if setting.strip().lower() in _OFF else Path(setting).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fusegrad"


def describe(directory: Path) -> str:
    """The directory and where its name came from, for messages."""
    if os.environ.get("FUSEGRAD_CACHE_DIR") is not None:
        return f"{directory} (FUSEGRAD_CACHE_DIR)"
    return f"{directory} (the default; FUSEGRAD_CACHE_DIR moves it)"


# --- falling back -------------------------------------------------------------------------

_memory_only: str | None = None  # why this process stopped using the disk, once it has
_warned: set[str] = set()


def warn_once(topic: str, message: str) -> None:
    if topic not in _warned:
        _warned.add(topic)
        warnings.warn(f"fusegrad: {message}", CacheWarning, stacklevel=3)


def give_up_disk(problem: str) -> None:
    """Compile the rest of this process's kernels in memory, saying why once. A failed
    directory usually fails again (read-only, full), and one warning beats a warning
    and a failed write per kernel."""
    global _memory_only
    if _memory_only is None:
        _memory_only = problem
        warn_once("disk", f"{problem}; compiling kernels in memory for the rest of this "
                          "process (nothing more is cached on disk)")


def disk_dir() -> Path | None:
    """Where to write kernel files: the cache directory, created if needed, or None to
    compile in memory (the cache is off, or unusable in this process)."""
    directory = cache_dir()
    if directory is None or _memory_only is not None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        give_up_disk(f"the kernel cache directory {describe(directory)} is not a directory; "
                     "point FUSEGRAD_CACHE_DIR at a directory, or set it to off")
        return None
    except OSError as error:
        give_up_disk(f"cannot create the kernel cache directory {describe(directory)}: {error}")
        return None
    return directory


# --- size and eviction --------------------------------------------------------------------

def max_bytes() -> int | None:
    """FUSEGRAD_CACHE_MAX_BYTES (a number of bytes, or with a K, M or G suffix: powers
    of 1024), default 1 GiB; None (no limit) for 0 or off."""
    setting = os.environ.get("FUSEGRAD_CACHE_MAX_BYTES", "").strip().upper()
    if not setting:
        return DEFAULT_MAX_BYTES
    if setting.lower() in _OFF:
        return None
    scale = 1024 ** (" KMG".index(setting[-1])) if setting[-1] in "KMG" else 1
    try:
        limit = int(float(setting.rstrip("KMGB")) * scale)
    except ValueError:
        warn_once("max_bytes", f"FUSEGRAD_CACHE_MAX_BYTES={setting!r} is not a size; "
                               f"using the default, {DEFAULT_MAX_BYTES} bytes")
        return DEFAULT_MAX_BYTES
    return limit if limit > 0 else None


@dataclass
class Entry:
    """One kernel's files: its source and Numba's index and data files."""
    files: list[Path]
    size: int
    last_used: float  # the newest modification time among them (loads touch the source)


def entries(directory: Path) -> dict[str, Entry]:
    found: dict[str, Entry] = {}
    for folder in (directory, directory / _PYCACHE):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            match = _KERNEL_FILE.match(name)
            if match is None or ".tmp" in name:  # being written, or left by a dead process
                continue
            path = folder / name
            try:
                status = path.stat()
            except OSError:
                continue  # removed meanwhile
            entry = found.setdefault(match.group(1), Entry([], 0, 0.0))
            entry.files.append(path)
            entry.size += status.st_size
            entry.last_used = max(entry.last_used, status.st_mtime)
    return found


def _remove(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink()
        except OSError:
            pass  # gone already, or not ours to remove: the next look tries again


def _stale_temporaries(directory: Path) -> list[Path]:
    now = time.time()
    stale = []
    for folder in (directory, directory / _PYCACHE):
        for path in folder.glob("k_*.tmp*"):
            try:
                if now - path.stat().st_mtime > STALE_TEMPORARY_SECONDS:
                    stale.append(path)
            except OSError:
                pass
    return stale


def evict(directory: Path, limit: int | None) -> int:
    """Remove the least recently used kernels until the cache holds at most `limit`
    bytes, and temporary files left by dead processes; return the bytes freed. A kernel
    another process is using loses only its files: that process has compiled it."""
    _remove(_stale_temporaries(directory))
    if limit is None:
        return 0
    found = sorted(entries(directory).values(), key=lambda e: e.last_used)
    total = sum(e.size for e in found)
    freed = 0
    for entry in found:
        if total - freed <= limit:
            break
        _remove(entry.files)
        freed += entry.size
    return freed


def clear(directory: Path) -> int:
    """Remove every kernel file (and nothing else: the directory may be shared)."""
    freed = evict(directory, 0)
    _remove(list(directory.glob("k_*.tmp*")) + list((directory / _PYCACHE).glob("k_*.tmp*")))
    return freed


_written = 0


def note_new_kernel(directory: Path) -> None:
    """Count a kernel file this process wrote; keep the cache under its limit."""
    global _written
    if _written % EVICTION_INTERVAL == 0:
        evict(directory, max_bytes())
    _written += 1
