"""The GPU script's document as text (``gpu.txt``), and the issue's targets read from it."""

from __future__ import annotations

from benchmarks.report import duration, ratio_text

GEMM_CASES = ("matmul", "linear", "bilinear", "scaled linear", "chain", "batched bcast")
TARGETS = {"ratio": 1.0, "peak": 1.3}  # x the framework's own einsum; x the measured limit
RATIO_DTYPES = ("bfloat16", "float32")
OWN = {"einsgrad-torch": "torch", "einsgrad-jax": "jax"}


def _seconds(cell: dict) -> float | None:
    """A cell's time: an ok one's, or a wrong one's (timed, its values off the reference)."""
    return cell.get("seconds") if cell.get("status") in ("ok", "wrong") else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def targets(doc: dict) -> list[dict]:
    """Each target with its value (None where a figure is missing) and whether it is met."""
    found = []
    for row in doc.get("speed", {}).get("rows", []):
        where = f"{row['case']} {row['dtype']}"
        for system, own in OWN.items():
            for mode in ("oneshot", "pullback"):
                mine, theirs = row["cells"][system][mode], row["cells"][own][mode]
                if row["dtype"] in RATIO_DTYPES and _seconds(theirs):
                    value = _ratio(_seconds(mine), _seconds(theirs))
                    found.append({"target": f"{system} x {own}", "where": f"{where} {mode}", "value": value,
                                  "met": value is not None and value <= TARGETS["ratio"]})
                limit = (row.get("limit") or {}).get(mode)
                if row["case"] in GEMM_CASES and limit and limit[1] == "flops":
                    value = _ratio(_seconds(mine), limit[0])
                    found.append({"target": f"{system} x peak", "where": f"{where} {mode}", "value": value,
                                  "met": value is not None and value <= TARGETS["peak"]})
    checks = doc.get("correctness")
    if checks and checks.get("status") != "skipped":
        failures = sum(f.get("failures", 0) + f.get("errors", 0) for f in checks["files"].values())
        broken = [p for p, f in checks["files"].items() if f["status"] in ("error", "timed out")]
        found.append({"target": "failures on the device", "where": ", ".join(broken) or "every test file run",
                      "value": failures, "met": failures == 0 and not broken})
    rows = doc.get("speed", {}).get("rows", [])
    if rows:
        bad = [f"{system} {row['case']} {row['dtype']} {mode}" for row in rows for system in OWN
               for mode, cell in row["cells"][system].items() if cell["status"] != "ok"]
        found.append({"target": "einsgrad's speed cells wrong or failing", "where": ", ".join(bad) or "every row run",
                      "value": len(bad), "met": not bad})
    return found


def text(doc: dict) -> str:
    """Every phase's figures, the targets and what was skipped, as text."""
    s = doc["settings"]
    lines = [f"# einsgrad on {doc['device'].get('gpu', s['device'])}: python -m benchmarks.gpu --device {s['device']}"
             + (" --quick" if s["quick"] else "") + f"  (budget {s['budget_seconds']:.0f} s, wall "
             f"{doc.get('wall_seconds', 0):.0f} s)",
             "# " + ", ".join(f"{k} {v}" for k, v in doc["device"].items() if k not in ("device", "gpu"))]
    for name, phase in doc["phases"].items():
        lines.append(f"# phase {name}: {phase['status']} in {phase.get('seconds', 0):.0f} s"
                     + (f" ({phase['note']})" if phase.get("note") else ""))
    lines += _checks(doc.get("correctness")) + _speed(doc) + _training(doc.get("training")) + _scale(doc.get("scale"))
    found = targets(doc)
    lines += ["", f"# targets: {sum(t['met'] for t in found)} of {len(found)} met (gradients <= "
              f"{TARGETS['ratio']}x the framework's einsum in {', '.join(RATIO_DTYPES)}; GEMM-shaped cases "
              f"<= {TARGETS['peak']}x the measured peak; no failure on the device)"]
    for kind in dict.fromkeys(t["target"] for t in found):
        group = [t for t in found if t["target"] == kind]
        missed = [f"{t['where']} ({t['value']:.2f})" if isinstance(t["value"], float) else t["where"]
                  for t in group if not t["met"]]
        lines.append(f"{kind}: {len(group) - len(missed)} of {len(group)} met"
                     + (f"; missed: {', '.join(missed)}" if missed else ""))
    return "\n".join(lines) + "\n"


def _checks(checks: dict | None) -> list[str]:
    if not checks:
        return []
    note = f" ({checks['note']})" if checks.get("note") else ""
    lines = ["", f"# correctness on the device: {checks['status']}{note}"]
    for path, f in checks.get("files", {}).items():
        counts = ", ".join(f"{f[k]} {k}" for k in ("passed", "failures", "errors", "skipped") if k in f)
        lines.append(f"{path:<28} {f['status']:<9} {counts}" + (f" in {f['seconds']:.0f} s" if "seconds" in f else "")
                     + (f", hypothesis {f['hypothesis_profile']}" if "hypothesis_profile" in f else "")
                     + (f" ({f['note']})" if f.get("note") else ""))
        lines += [f"    FAILED {name}" for name in f.get("failing", [])]
    return lines


def _cell(cell: dict) -> str:
    """A time; a wrong cell's time is starred; an error shows as ERROR."""
    if cell.get("status") in ("ok", "wrong") and cell.get("seconds"):
        return duration(cell["seconds"]) + ("*" if cell["status"] == "wrong" else "")
    return cell.get("status", "-").upper()


def _speed(doc: dict) -> list[str]:
    speed = doc.get("speed")
    if not speed:
        return []
    peaks = doc.get("peaks", {})
    clock = "CUDA-event-timed" if "gpu" in doc["device"] else "perf_counter-timed"
    lines = ["", "# speed: all gradients, one-shot (forward included) and by the pullback of a stored forward; "
             f"median of {clock} rounds after warm-up (jax: blocked wall clock)",
             "# peak: " + ", ".join(f"{d} GEMM {v / 1e12:.1f} TFLOP/s" for d, v in peaks.get("gemm", {}).items())
             + (f", copy {peaks['copy'] / 1e9:.0f} GB/s" if "copy" in peaks else ""),
             "# ratio: einsgrad over the framework's own einsum; x lim: einsgrad's time over the case's FLOPs "
             "at the GEMM peak or its bytes at the copy bandwidth, whichever is longer (f: FLOPs, b: bytes); "
             "*: values off the float64 reference by more than the dtype's tolerance (see the notes)",
             f"{'case':<14} {'dtype':<9} {'mode':<9} {'einsgrad-torch':>14} {'torch':>10} {'ratio':>6} "
             f"{'einsgrad-jax':>12} {'jax':>10} {'ratio':>6} {'x lim':>11}"]
    notes: dict = {}
    for row in speed["rows"]:
        for mode in ("oneshot", "pullback"):
            c = row["cells"]
            limit = (row.get("limit") or {}).get(mode)
            over = [_ratio(_seconds(c[s][mode]), limit[0]) if limit else None for s in OWN]
            lim = "/".join(f"{v:.2f}" if v else "-" for v in over) + (limit[1][0] if limit else "")
            lines.append(f"{row['case']:<14} {row['dtype']:<9} {mode:<9} {_cell(c['einsgrad-torch'][mode]):>14} "
                         f"{_cell(c['torch'][mode]):>10} "
                         f"{ratio_text(_ratio(_seconds(c['einsgrad-torch'][mode]), _seconds(c['torch'][mode]))):>6} "
                         f"{_cell(c['einsgrad-jax'][mode]):>12} {_cell(c['jax'][mode]):>10} "
                         f"{ratio_text(_ratio(_seconds(c['einsgrad-jax'][mode]), _seconds(c['jax'][mode]))):>6} "
                         f"{lim:>11}")
            for system, modes in c.items():
                if modes[mode].get("note"):
                    notes.setdefault((system, modes[mode]["note"]), []).append(f"{row['case']} {row['dtype']} {mode}")
    lines += [f"{system}: {note} [{', '.join(where)}]" for (system, note), where in notes.items()]
    if speed.get("skipped"):
        lines.append(f"# skipped (time budget): {', '.join(speed['skipped'])}")
    return lines


def _training(training: dict | None) -> list[str]:
    if not training:
        return []
    lines = ["", "# training steps in bfloat16 (forward, loss, backward, SGD update); ratio: einsgrad's step "
             "over the framework's own einsum's; check: first-step difference relative to the largest value",
             f"{'model':<13} {'framework':<9} {'own einsum':>11} {'einsgrad':>11} {'ratio':>6} {'check':>8}"]
    for p in training["pairs"]:
        lines.append(f"{p['model']:<13} {p['framework']:<9} {_cell(p['own']):>11} {_cell(p['einsgrad']):>11} "
                     f"{ratio_text(p['ratio']):>6} {'' if p['check'] is None else format(p['check'], '.1e'):>8}")
        lines += [f"    {who}: {p[who]['note']}" for who in ("einsgrad", "own") if p[who].get("note")]
    if training.get("skipped"):
        lines.append(f"# skipped (time budget): {', '.join(training['skipped'])}")
    return lines


def _gib(nbytes) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**30:.2f} GiB"


def _scale(scale: dict | None) -> list[str]:
    if not scale or "systems" not in scale:
        return []
    lines = ["", f"# scale: {scale['spec']} {scale['shapes'][0]} x3 in {scale['dtype']}, forward + all gradients; "
             f"largest intermediate {_gib(scale['largest_intermediate_bytes'])}, memory_limit {scale['memory_limit']} "
             "elements (on torch arrays it bounds the path; numpy arrays would run in slices "
             + ", ".join(f"{label} by {n}" for label, n in scale.get("numpy_slices", ())) + "); "
             "peak: torch.cuda.max_memory_allocated above the operands",
             f"{'system':<28} {'planned largest':>16} {'peak':>11} {'time':>10} {'error':>8}"]
    for name, e in scale["systems"].items():
        if "failure" in e:
            lines.append(f"{name:<28} FAILED: {e['failure']}")
            continue
        lines.append(f"{name:<28} {_gib(e['planned_largest_bytes']):>16} {_gib(e['peak_bytes']):>11} "
                     f"{duration(e['seconds']):>10} {e['error']:>8.1e}" + (f"  ({e['note']})" if e.get("note") else ""))
    if scale.get("skipped"):
        lines.append(f"# skipped (time budget): {', '.join(scale['skipped'])}")
    return lines
