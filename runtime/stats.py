"""Counters for benchmarks and tests: kernel launches and compilations."""
from __future__ import annotations

_counters = {"kernels_launched": 0, "library_calls": 0, "compiles": 0, "cache_loads": 0,
             "compile_seconds": 0.0}


def count(name: str, amount: float = 1) -> None:
    _counters[name] += amount


def snapshot() -> dict:
    return dict(_counters)


def reset() -> None:
    for key in _counters:
        _counters[key] = 0.0 if key == "compile_seconds" else 0
