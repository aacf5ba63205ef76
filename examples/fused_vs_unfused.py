"""Fused vs unfused vs the field, at the full sizes of the README's benchmarks.

    python examples/fused_vs_unfused.py [--json FILE] [--plot FILE.png] [--workload W2] ...

The same as `python -m fusegrad bench`, with the same options; the harness is fusegrad.bench.
"""
import sys

from fusegrad.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
