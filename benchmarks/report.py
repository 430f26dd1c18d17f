"""Presents results: a terminal table, a JSON document, a PNG plot."""

from __future__ import annotations

import dataclasses
import json
import math

from benchmarks.runner import MODES, TOLERANCE, Cell, Results, Row

BASE = "einsgrad"
_DTYPE = {"float64": "f64", "float32": "f32"}
_MODE = {"forward": "forward", "oneshot": "one-shot", "pullback": "pullback"}
_STATUS = {"error": "ERROR", "wrong": "WRONG", "skipped": "skip", "n/a": "-"}


def _si(value: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def duration(seconds: float) -> str:
    """Seconds as a short text: microseconds, milliseconds or seconds."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f}us"
    return f"{seconds * 1e3:.2f}ms" if seconds < 1 else f"{seconds:.2f}s"


def ratio_text(value: float | None) -> str:
    """A ratio as ``1.23x`` (empty where it is missing)."""
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.2f}x" if value < 100 else f"{value:.0f}x"


def ratios(row: Row, mode: str, name: str) -> tuple[float | None, float | None]:
    """A cell's time over einsgrad's, and over the limit (None where either is missing)."""
    seconds = row.cells[name][mode].seconds
    base = row.cells.get(BASE, {}).get(mode, Cell("n/a")).seconds
    limit = row.limit[mode][0] if row.limit else None
    return (seconds / base if seconds and base else None,
            seconds / limit if seconds and limit else None)


def table(results: Results) -> str:
    """The results as a text table, one line per case, dtype and mode, then the notes."""
    names = [n for n in results.systems if n not in results.skipped]
    others = [n for n in names if n != BASE]
    p = results.peaks
    lines = [f"# GEMM peak ({p.gemm_size}^3): "
             + ", ".join(f"{_si(v)}FLOP/s {_DTYPE.get(d, d)}" for d, v in p.gemm.items())
             + f"; copy {_si(p.copy)}B/s; median of {results.settings.repeats} interleaved runs",
             "# limit = max(FLOPs / GEMM peak, bytes / copy bandwidth), F: FLOP-bound, B: byte-bound;"
             f" {BASE}: time, x limit; others: time, x {BASE}; load: other processes' CPU share"]
    if results.skipped:
        lines.append("# skipped: " + ", ".join(f"{n} ({why})" for n, why in results.skipped.items()))
    head = f"{'case':<14} {'dt':<3} {'mode':<8} {'FLOPs':>6} {'limit':>10} "
    head += f"{BASE:>9} {'/limit':>6} " if BASE in names else ""
    lines.append(head + "".join(f"{n:>9} {'':>6} " for n in others) + "  load")
    notes: dict = {}
    for row in results.rows:
        for i, mode in enumerate(MODES):
            limit = f"{duration(row.limit[mode][0])} {row.limit[mode][1][0].upper()}" if row.limit else "-"
            text = (f"{row.case.name if i == 0 else '':<14} {_DTYPE.get(row.dtype, row.dtype):<3} "
                    f"{_MODE[mode]:<8} {_si(row.flops[mode]):>6} {limit:>10} ")
            for name in names:
                cell = row.cells[name][mode]
                if cell.status == "ok":
                    versus_base, versus_limit = ratios(row, mode, name)
                    ratio = versus_limit if name == BASE else versus_base
                    text += f"{duration(cell.seconds):>9} {ratio_text(ratio):>6} "
                else:
                    text += f"{_STATUS.get(cell.status, cell.status):>16} "
                    if cell.note:
                        notes.setdefault((name, cell.status, cell.note), []).append(
                            f"{row.case.name} {_DTYPE.get(row.dtype, row.dtype)} {_MODE[mode]}")
            if i == 0 and row.load is not None:
                text += f" {row.load:4.0%}" + ("*" if len(row.loads) > 1 else "")
            lines.append(text.rstrip())
    if any(len(row.loads) > 1 for row in results.rows):
        lines.append("* re-run under load; loads of the attempts are in the JSON")
    for (name, status, note), where in notes.items():
        lines.append(f"{name} {_STATUS.get(status, status)}: {note} [{', '.join(where[:3])}"
                     f"{f' and {len(where) - 3} more' if len(where) > 3 else ''}]")
    return "\n".join(lines)


def document(results: Results, machine: dict, versions: dict) -> dict:
    """The results as a JSON-ready dict, with the machine and library versions."""
    p = results.peaks
    rows = []
    for row in results.rows:
        modes = {}
        for mode in MODES:
            cells = {}
            for name, by_mode in row.cells.items():
                cell = by_mode[mode]
                versus_base, versus_limit = ratios(row, mode, name)
                cells[name] = {"status": cell.status, "seconds": cell.seconds, "note": cell.note,
                               "vs_einsgrad": versus_base, "vs_limit": versus_limit}
            modes[mode] = {"flops": row.flops[mode], "bytes": row.bytes[mode],
                           "limit_seconds": row.limit[mode][0] if row.limit else None,
                           "bound": row.limit[mode][1] if row.limit else None, "cells": cells}
        rows.append({"case": row.case.name, "spec": row.case.spec, "shapes": row.case.shapes,
                     "dtype": row.dtype, "overhead": row.case.overhead, "load": row.load,
                     "loads": row.loads, "modes": modes})
    return {"machine": machine, "versions": versions,
            "peaks": {"gemm_flops_per_s": dict(p.gemm), "gemm_size": p.gemm_size,
                      "copy_bytes_per_s": p.copy, "copy_bytes": p.copy_bytes,
                      "naive_einsum_flops_per_s": {"2 operands": p.naive[0], "3+ operands": p.naive[1]}},
            "settings": {**dataclasses.asdict(results.settings), "tolerance": TOLERANCE},
            "systems": list(results.systems), "skipped": dict(results.skipped), "rows": rows}


def write_json(path: str, results: Results, machine: dict, versions: dict) -> None:
    """Writes :func:`document` to ``path``."""
    with open(path, "w") as f:
        json.dump(document(results, machine, versions), f, indent=1)


def plot(path: str, results: Results) -> None:
    """A PNG of every system's time over the limit, per case and dtype, one panel per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results.rows if r.limit]
    names = [n for n in results.systems if n not in results.skipped]
    width = 0.8 / max(len(names), 1)
    fig, axes = plt.subplots(len(MODES), 1, figsize=(max(8.0, 0.55 * len(rows) + 2), 11), sharex=True)
    for ax, mode in zip(axes, MODES):
        for j, name in enumerate(names):
            values = [ratios(r, mode, name)[1] or math.nan for r in rows]
            ax.bar([i + (j - (len(names) - 1) / 2) * width for i in range(len(rows))], values,
                   width, label=name)
        ax.set_yscale("log")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel(f"{_MODE[mode]}: time / limit")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[-1].set_xticks(range(len(rows)), [f"{r.case.name} {_DTYPE.get(r.dtype, r.dtype)}" for r in rows],
                        rotation=60, ha="right")
    axes[0].legend(ncol=4, fontsize="small", loc="upper left")
    axes[0].set_title("time over this machine's limit (lower is better; 1 = limit)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
