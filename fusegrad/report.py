"""The benchmark's report: the table (rich's, or plain text without it) and the plot."""
from __future__ import annotations

from typing import Any

PIP_HINT = 'pip install "fusegrad[bench]"'
COLUMNS = ("", "size", "system", "median ms", "IQR ms", "vs unfused", "vs numpy", "% bw",
           "kernels", "compile s", "1st call s", "check")
TEXT_COLUMNS = (0, 2, 11)
# Rich wraps to 80 columns when the output is not a terminal; the table needs about 120.
FILE_WIDTH = 132


def _cells(r: Any) -> list[str]:
    if r.median_s is None:
        return [r.workload, _size(r.size), r.system] + [""] * 8 + ["failed"]
    check = "ok" if r.correct else f"err {r.max_rel_error:.0e}"
    return [r.workload, _size(r.size), r.system, _ms(r.median_s),
            _ms(r.p75_s - r.p25_s), _ratio(r.speedup_vs_unfused), _ratio(r.speedup_vs_numpy),
            "" if r.bandwidth_fraction is None else f"{100 * r.bandwidth_fraction:.0f}%",
            "" if r.kernels_launched is None else str(r.kernels_launched),
            "" if r.compile_s is None else f"{r.compile_s:.2f}", _seconds(r.first_call_s),
            check]


def _size(n: int) -> str:
    for factor, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)


def _ms(seconds: float) -> str:
    ms = 1e3 * seconds
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}" if ms >= 0.001 else "<0.001"


def _seconds(seconds: float) -> str:
    return f"{seconds:.3g}" if seconds >= 0.001 else "<0.001"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _groups(records: list) -> list[list]:
    groups: list[list] = []
    for r in records:
        if not groups or (groups[-1][0].workload, groups[-1][0].size) != (r.workload, r.size):
            groups.append([])
        groups[-1].append(r)
    return groups


def _header(report: Any, tolerance: float) -> list[str]:
    m = report.machine
    triads = ", ".join(f"{gbps:.1f} GB/s ({device})" for device, gbps in m["triad_gbps"].items())
    workloads = sorted({f"{r.workload} {r.name}" for r in report.records})
    # fusegrad's kernels run on its own pool (runtime/threads.py); Numba's layer runs
    # only the hand-written baselines and the triad.
    lines = [f"numba {m['numba']}, {m['numba_threads']} threads (fusegrad's pool; the hand-written "
             f"kernels on Numba's {m['threading_layer']} layer), numpy {m['numpy']}, "
             f"python {m['python']}; triad a = b + s*c on {m['triad_n']:,} float32: {triads}",
             "workloads: " + ", ".join(workloads),
             "% bw = minimal bytes / median time, as a share of the triad bandwidth "
             "(over 100% when the data fits in cache)",
             f"check = value and gradients within {tolerance:g} of NumPy's (relative to the "
             "largest element); 1st call = trace, compile and run at a new shape",
             "fusegrad-eager is timed once warmed up (30 calls and 1 s at least): its compile s "
             "counts the compiles its repeated backward and ops made meanwhile"]
    return lines + [f"note: {note}" for note in report.notes]


def show_report(report: Any, tolerance: float) -> None:
    lines = _header(report, tolerance)
    failures = [f"{r.workload} {r.system} {r.size:,}: {r.status}"
                for r in report.records if r.median_s is None]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        _show_plain(report, lines, failures)
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=FILE_WIDTH)
    for line in lines:
        console.print(line, highlight=False, markup=False)
    table = Table(title="fusegrad bench: value and gradients, forward and backward together")
    for k, column in enumerate(COLUMNS):
        table.add_column(column, justify="left" if k in TEXT_COLUMNS else "right")
    for group in _groups(report.records):
        for r in group:
            cells = _cells(r)
            style = "green" if r.correct else "red"
            table.add_row(*cells[:-1], f"[{style}]{cells[-1]}[/]")
        table.add_section()
    console.print(table)
    for failure in failures:
        console.print(failure, style="red", highlight=False, markup=False)


def _show_plain(report: Any, lines: list[str], failures: list[str]) -> None:
    rows = [_cells(r) for r in report.records]
    widths = [max([len(c)] + [len(row[k]) for row in rows]) for k, c in enumerate(COLUMNS)]

    def join(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if k in TEXT_COLUMNS else c.rjust(w)
                         for k, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print("\n".join(lines))
    print(join(list(COLUMNS)))
    for group in _groups(report.records):
        print("-" * sum(widths + [2 * (len(widths) - 1)]))
        for r in group:
            print(join(_cells(r)))
    for failure in failures:
        print(failure)
    print(f"for a nicer table with a progress bar, and for --plot: {PIP_HINT}")


def plot(report: Any, path: str) -> None:
    """Time against size (log-log) for W1 and W2, and the % of triad bandwidth per system."""
    import matplotlib
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    timed = [r for r in report.records if r.median_s is not None]
    systems = list(dict.fromkeys(r.system for r in timed))
    scaling = [key for key in ("W1", "W2") if any(r.workload == key for r in timed)]
    figure, axes = plt.subplots(1, len(scaling) + 1, figsize=(6 * (len(scaling) + 1), 4.8),
                                squeeze=False)
    for ax, key in zip(axes[0], scaling):
        for system in systems:
            points = sorted((r.size, r.median_s) for r in timed
                            if r.workload == key and r.system == system)
            if points:
                ax.loglog(*zip(*points), marker="o", label=system)
        draw_roofline(ax, [r for r in timed if r.workload == key], report.machine["triad_gbps"])
        name = next(r.name for r in timed if r.workload == key)
        ax.set(title=f"{key} {name}: value and gradients, {report.machine.get('dtype', 'float32')}",
               xlabel="N (elements)", ylabel="median time (s)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    _plot_bandwidth(axes[0][-1], timed, systems)
    threads = report.machine["numba_threads"]
    figure.suptitle(f"fusegrad bench: {threads} threads, triad "
                    f"{report.machine['triad_gbps']['cpu']:.1f} GB/s")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_bandwidth(ax: Any, timed: list, systems: list[str]) -> None:
    # One group of bars per workload, at the largest size measured for it.
    largest = {}
    for r in timed:
        largest[r.workload] = max(largest.get(r.workload, 0), r.size)
    groups = sorted(largest.items())
    width = 0.8 / max(len(systems), 1)
    fraction = {(r.workload, r.size, r.system): r.bandwidth_fraction for r in timed}
    for k, system in enumerate(systems):
        bars = [(g + k * width, 100 * fraction[key, size, system])
                for g, (key, size) in enumerate(groups)
                if fraction.get((key, size, system)) is not None]
        if bars:
            ax.bar(*zip(*bars), width, label=system)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))],
                  [f"{key}\n{size:,}" for key, size in groups])
    ax.axhline(100, color="black", linewidth=0.8, linestyle="--")
    ax.set(title="effective bandwidth (minimal bytes / median time)",
           ylabel="% of triad bandwidth")
    ax.legend(fontsize=8)


# --- issue 12: the roofline and the scaling table --------------------------------------------

def _floor_s(r: Any, triad_gbps: dict) -> float | None:
    gbps = triad_gbps.get(r.device)
    return r.minimal_bytes / (gbps * 1e9) if gbps else None


def draw_roofline(ax: Any, records: list, triad_gbps: dict) -> None:
    """The memory-traffic floor against N: minimal bytes (inputs read once, gradients
    written once) at the triad bandwidth of the same run. Below it only data that
    stays in cache (small N) can go."""
    points = sorted({(r.size, _floor_s(r, triad_gbps)) for r in records
                     if _floor_s(r, triad_gbps) is not None})
    if points:
        ax.loglog(*zip(*points), color="black", linestyle="--", linewidth=1,
                  label="roofline: minimal bytes / triad")


SCALING_COLUMNS = ("", "N", "dtype")


def scaling_rows(report: Any) -> tuple[list[str], list[list[str]]]:
    """One row per (workload, N): each system's median ms, the roofline's ms and each
    system's time as a multiple of it."""
    timed = [r for r in report.records if r.median_s is not None]
    systems = list(dict.fromkeys(r.system for r in timed))
    header = list(SCALING_COLUMNS) + [f"{s} ms" for s in systems] + ["roofline ms"]
    header += [f"{s} / roofline" for s in systems]
    triad = report.machine["triad_gbps"]
    rows = []
    for key, size in dict.fromkeys((r.workload, r.size) for r in timed):
        here = {r.system: r for r in timed if (r.workload, r.size) == (key, size)}
        floor = next(_floor_s(r, triad) for r in here.values())
        row = [key, _size(size), report.machine.get("dtype", "float32")]
        row += [_ms(here[s].median_s) if s in here else "" for s in systems]
        row += [_ms(floor) if floor else ""]
        row += [f"{here[s].median_s / floor:.2f}x" if s in here and floor else ""
                for s in systems]
        rows.append(row)
    return header, rows


def show_scaling(report: Any) -> None:
    header, rows = scaling_rows(report)
    title = ("time against N; roofline = minimal bytes / triad bandwidth "
             f"({report.machine['triad_gbps'].get('cpu', 0):.1f} GB/s), "
             "below 1.00x only in cache")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(c), *(len(row[k]) for row in rows)) for k, c in enumerate(header)]
        print(title)
        for row in [header] + rows:
            print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=FILE_WIDTH)
    table = Table(title=title)
    for k, column in enumerate(header):
        table.add_column(column, justify="left" if k == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
