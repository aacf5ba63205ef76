"""Numba's on-disk cache of fusegrad's kernels: always in fusegrad's cache directory,
and never fatal.

Numba picks where a `cache=True` function's compiled code goes with a list of
locators (numba.core.caching.CacheImpl): NUMBA_CACHE_DIR first, then `__pycache__`
beside the source if it is writable, then ~/.cache/numba. For fusegrad's kernels that
sent compiled code out of the directory `fusegrad cache clear` empties, whenever
`__pycache__` was read-only or the user had set NUMBA_CACHE_DIR for their own code.
`KernelLocator`, put first in that list, claims fusegrad's kernel files only (the
loader registers each before running it) and leaves every other function to Numba.

`GuardedCache` wraps each kernel's cache: an unreadable index or data file (truncated,
garbled) is deleted and the kernel compiled afresh, and a failed save (disk full,
read-only) leaves the compiled kernel in memory; either way with one warning.
"""
from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path
from types import ModuleType

from numba.core.caching import CacheImpl, NullCache, _CacheLocator

from fusegrad.runtime import cache

_sources: dict[str, str] = {}  # kernel file name (as in co_filename) -> its source


class KernelLocator(_CacheLocator):
    """Numba's files for a fusegrad kernel: `__pycache__` beside the kernel's file,
    whatever NUMBA_CACHE_DIR says and whether or not the directory is writable now
    (loading only reads; GuardedCache handles a failed save)."""

    def __init__(self, py_func, py_file: str) -> None:
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(os.path.dirname(py_file), "__pycache__")

    def get_cache_path(self) -> str:
        return self._cache_path

    def get_source_stamp(self) -> bytes:
        # The hash of the text we ran, which the file on disk was checked to hold: no
        # stat of a file that `fusegrad cache clear` may just have removed.
        return hashlib.sha256(_sources[self._py_file].encode()).digest()

    def get_disambiguator(self) -> str:
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func, py_file: str):
        return cls(py_func, py_file) if py_file in _sources else None


def install() -> None:
    if KernelLocator not in CacheImpl._locator_classes:
        CacheImpl._locator_classes = [KernelLocator, *CacheImpl._locator_classes]


def register(filename: str, source: str) -> None:
    """Mark `filename` as a fusegrad kernel whose text is `source`, before running it."""
    _sources[filename] = source


class GuardedCache:
    """A dispatcher's cache whose faults cost a compile, never the program."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def load_overload(self, sig, target_context):
        try:
            return self._inner.load_overload(sig, target_context)
        except Exception as error:  # noqa: BLE001 - any unreadable file means "not cached"
            self._discard(error)
            return None

    def save_overload(self, sig, data) -> None:
        try:
            self._inner.save_overload(sig, data)
        except OSError as error:
            cache.give_up_disk(f"cannot save compiled kernels in {self._inner.cache_path}: "
                               f"{error}")

    def _discard(self, error: Exception) -> None:
        base = Path(self._inner.cache_path) / self._inner._impl.filename_base
        files = glob.glob(glob.escape(str(base)) + ".*")
        for path in files:
            try:
                os.unlink(path)
            except OSError:
                pass
        cache.warn_once("numba-files", f"Numba's cached code for a kernel was unreadable "
                                       f"({type(error).__name__}: {error}; {base}.*); "
                                       "deleted it and compiled the kernel afresh")


def attach(module: ModuleType, on_disk: bool) -> None:
    """Give each kernel of `module` its guarded cache (or none, for kernels compiled in
    memory): before its first call, which is when Numba loads or compiles."""
    for value in vars(module).values():
        function = getattr(value, "py_func", None)
        if function is None or function.__module__ != module.__name__:
            continue
        if hasattr(value, "_cache"):
            value._cache = GuardedCache(value._cache) if on_disk else NullCache()


# ---------------------------------------------------------------- CUDA kernels (issue 13, item 4)

def install_cuda() -> None:
    """The same locator for CUDA kernels. The numba.cuda built into Numba caches with
    numba.core.caching (where `install` put it); numba-cuda has its own copy of that
    module, numba.cuda.core.caching, with its own list of locators."""
    try:
        from numba.cuda.core import caching
    except ImportError:   # the built-in numba.cuda, or the simulator
        return
    if KernelLocator not in caching.CacheImpl._locator_classes:
        caching.CacheImpl._locator_classes = [KernelLocator, *caching.CacheImpl._locator_classes]
