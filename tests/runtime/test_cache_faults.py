"""Faults of the kernel cache cost a compile and one warning, never the program:
damaged files, a directory that is a file, read-only or full, or removed while a
process compiles; and Numba's files for fusegrad's kernels stay in fusegrad's cache.

Each case runs a tiny program in a fresh interpreter (the cache and the faults are
per process). Faults are injected by a prelude that makes writes under the cache fail
as the kernel would make them fail (CI runs as root, where chmod stops nothing); the
real read-only and full file systems are tried too where this machine lets us mount.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

PROGRAM = textwrap.dedent("""
    import json, warnings
    import numpy as np
    import fusegrad as fg
    from fusegrad.runtime import stats
    from fusegrad.runtime.cache import CacheWarning

    @fg.compile_grad
    def loss(x, y):
        return (fg.tanh(x) * y).sum()

    @fg.compile_grad
    def other(x):
        return (fg.exp(x) * x).sum()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value, (gx, gy) = loss(np.linspace(-1, 1, 6).reshape(2, 3), np.array([1.0, 2.0, 3.0]))
        second, _ = other(np.arange(3.0))
    print(json.dumps({"stats": stats.snapshot(), "value": float(value), "second": float(second),
                      "warnings": [str(w.message) for w in caught
                                   if issubclass(w.category, CacheWarning)],
                      "other_warnings": [str(w.message) for w in caught
                                         if not issubclass(w.category, CacheWarning)]}))
""")
VALUE = float((np.tanh(np.linspace(-1, 1, 6).reshape(2, 3)) * [1.0, 2.0, 3.0]).sum())
SECOND = float((np.exp(np.arange(3.0)) * np.arange(3.0)).sum())

# Makes writes and directory creation under the cache fail with FAULT (an errno name).
# WHEN=open fails opening for writing (a read-only directory); WHEN=write fails the
# first write after the file was created (a full disk: an empty file is left behind);
# ONLY limits the fault to paths containing that text.
INJECT = textwrap.dedent("""
    import builtins, errno, io, os
    _CACHE, _FAULT = os.environ["FUSEGRAD_CACHE_DIR"], getattr(errno, os.environ["FAULT"])
    _WHEN, _ONLY = os.environ.get("WHEN", "open"), os.environ.get("ONLY", "")
    _open, _mkdir = builtins.open, os.mkdir

    def _hit(path):
        path = str(os.fspath(path)) if not isinstance(path, int) else ""
        return path.startswith(_CACHE) and _ONLY in path

    def _fail(path):
        raise OSError(_FAULT, os.strerror(_FAULT), str(path))

    class _Full:
        def __init__(self, f): self._f = f
        def __enter__(self): return self
        def __exit__(self, *a): self._f.close()
        def write(self, data): _fail(self._f.name)
        def __getattr__(self, name): return getattr(self._f, name)

    def open(file, mode="r", *args, **kwargs):
        if _hit(file) and any(c in mode for c in "wax+"):
            if _WHEN == "open":
                _fail(file)
            return _Full(_open(file, mode, *args, **kwargs))
        return _open(file, mode, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if _hit(path) and _WHEN == "open":
            _fail(path)
        return _mkdir(path, *args, **kwargs)

    builtins.open = io.open = open
    os.mkdir = mkdir
""")


def run(tmp_path: Path, cache: Path, prelude: str = "", **env: str) -> dict:
    script = tmp_path / "program.py"
    script.write_text(prelude + PROGRAM)
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("FUSEGRAD_", "NUMBA_CACHE_DIR", "XDG_"))}
    environ.update(FUSEGRAD_CACHE_DIR=str(cache), HOME=str(tmp_path / "home"), **env)
    done = subprocess.run([sys.executable, str(script)], env=environ, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["value"] == pytest.approx(VALUE) and result["second"] == pytest.approx(SECOND)
    assert result["other_warnings"] == []
    return result


def files(directory: Path, pattern: str = "*") -> list[Path]:
    return sorted(p for p in directory.rglob(pattern) if p.is_file())


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> Path:
    """A cache the program has filled once (copied by the tests that damage it)."""
    tmp = tmp_path_factory.mktemp("filled")
    result = run(tmp, tmp / "cache")
    assert result["stats"]["compiles"] >= 2 and result["warnings"] == []
    return tmp / "cache"


def copy_of(filled: Path, tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    subprocess.run(["cp", "-a", str(filled), str(cache)], check=True)
    return cache


def test_damaged_kernel_file_is_rewritten_with_one_warning(filled, tmp_path):
    cache = copy_of(filled, tmp_path)
    for path in files(cache, "k_*.py"):
        path.write_text(path.read_text()[:100])  # truncated: a SyntaxError if imported
    result = run(tmp_path, cache)
    assert len(result["warnings"]) == 1 and "did not hold the source" in result["warnings"][0]
    assert all(p.read_text().startswith("# Generated by fusegrad") and len(p.read_text()) > 100
               for p in files(cache, "k_*.py"))
    # The text is the same as before it was damaged, so Numba's files still serve.
    assert result["stats"]["compiles"] == 0


@pytest.mark.parametrize("damage", ["truncated index", "garbled data"])
def test_damaged_numba_files_are_deleted_and_compiled_afresh(filled, tmp_path, damage):
    cache = copy_of(filled, tmp_path)
    suffix = ".nbi" if damage == "truncated index" else ".nbc"
    for path in files(cache, "*" + suffix):
        path.write_bytes(path.read_bytes()[:10] if suffix == ".nbi" else b"garbage\n")
    result = run(tmp_path, cache)
    assert len(result["warnings"]) == 1 and "unreadable" in result["warnings"][0]
    assert result["stats"]["compiles"] >= 2
    again = run(tmp_path, cache)  # the damaged files were replaced by good ones
    assert again["warnings"] == [] and again["stats"]["compiles"] == 0


def test_cache_path_that_is_a_file_names_the_variable(tmp_path):
    cache = tmp_path / "cache"
    cache.write_text("not a directory")
    result = run(tmp_path, cache)
    [message] = result["warnings"]
    assert str(cache) in message and "FUSEGRAD_CACHE_DIR" in message
    assert "not a directory" in message and "in memory" in message
    assert cache.read_text() == "not a directory"


def test_read_only_cache_compiles_in_memory(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    result = run(tmp_path, cache, INJECT, FAULT="EROFS")
    [message] = result["warnings"]  # one warning for both kernels
    assert "Read-only file system" in message and "in memory" in message
    assert files(cache) == [] and not (tmp_path / "home").exists()


def test_read_only_cache_still_serves_what_it_holds(filled, tmp_path):
    cache = copy_of(filled, tmp_path)
    before = {p: p.read_bytes() for p in files(cache)}
    result = run(tmp_path, cache, INJECT, FAULT="EACCES")
    assert result["warnings"] == [] and result["stats"]["compiles"] == 0
    assert {p: p.read_bytes() for p in files(cache)} == before


@pytest.mark.parametrize("only", ["k_", ".nbc"], ids=["kernel file", "numba data"])
def test_full_disk_compiles_in_memory_and_leaves_no_temporary(tmp_path, only):
    # "k_" fails the first kernel file's write; ".nbc" lets the kernel files through
    # and fails Numba's save after a successful compile.
    cache = tmp_path / "cache"
    result = run(tmp_path, cache, INJECT, FAULT="ENOSPC", WHEN="write", ONLY=only)
    [message] = result["warnings"]
    assert "No space left on device" in message and "in memory" in message
    assert not [p for p in files(cache) if ".tmp" in p.name]


DELETE_WHILE_COMPILING = textwrap.dedent("""
    import os, shutil
    from fusegrad.runtime import loader, numba_cache

    def _delete():
        shutil.rmtree(os.environ["FUSEGRAD_CACHE_DIR"], ignore_errors=True)

    _run, _save = loader._run, numba_cache.GuardedCache.save_overload

    def run_after_delete(*args, **kwargs):  # the file written, then removed
        _delete()
        return _run(*args, **kwargs)

    def save_after_delete(self, *args):  # compiled, then the directory removed
        _delete()
        return _save(self, *args)

    loader._run = run_after_delete
    numba_cache.GuardedCache.save_overload = save_after_delete
""")


def test_cache_removed_while_compiling(tmp_path):
    # What `fusegrad info` used to suggest: rm -rf the cache while programs run.
    result = run(tmp_path, tmp_path / "cache", DELETE_WHILE_COMPILING)
    assert result["stats"]["compiles"] >= 2


def test_numba_files_stay_in_fusegrad_cache(tmp_path):
    """Even with NUMBA_CACHE_DIR set for the user's own code, which keeps it."""
    numba_dir, cache = tmp_path / "numba", tmp_path / "cache"
    (tmp_path / "users_code.py").write_text(textwrap.dedent("""
        from numba import njit

        @njit(cache=True)
        def twice(x):
            return 2 * x
    """))
    prelude = "import users_code\nassert users_code.twice(2) == 4\n"
    run(tmp_path, cache, prelude, NUMBA_CACHE_DIR=str(numba_dir), PYTHONPATH=str(tmp_path))
    assert files(cache, "k_*.nbi") and files(cache, "k_*.nbc")
    users = files(numba_dir)
    assert users and all(p.name.startswith("users_code.twice") for p in users)


# --- real file systems, where this machine lets us mount one ------------------------------

@pytest.fixture
def tmpfs(tmp_path):
    mounted = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mount{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)


def test_real_full_tmpfs(tmpfs, tmp_path):
    cache = tmpfs("size=64k") / "cache"
    [message] = run(tmp_path, cache)["warnings"]
    assert "No space left on device" in message
    assert not [p for p in files(cache) if ".tmp" in p.name]


def test_real_read_only_tmpfs(tmpfs, tmp_path):
    cache = tmpfs("size=1m,ro") / "cache"
    [message] = run(tmp_path, cache)["warnings"]
    assert "Read-only file system" in message and "FUSEGRAD_CACHE_DIR" in message
