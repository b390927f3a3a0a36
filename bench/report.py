"""Ratios, terminal tables and the chart of a benchmark run."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

BULK_PHASES = ["bulk_create", "update", "reassign", "bulk_update", "delete"]
PHASE_LABELS = {
    "bulk_create": "bulk_create",
    "update": "QuerySet.update (move)",
    "reassign": "QuerySet.update (to one author)",
    "bulk_update": "bulk_update",
    "delete": "delete",
}
TARGETS = {"bulk": 1.15, "single": 0.85, "reads": 100.0, "repair": 2.0}
COPYING_PHASES = {"insert", "move"}  # the floors' statements that run the copy's lookup


def paired_ratios(runs: list[float], base_runs: list[float]) -> tuple[float, float, float]:
    """Median, least and greatest of each run's ratio to the no-rules run of
    the same round. The rounds run the variants one after another, so a
    ratio divides figures measured minutes apart, not a whole run apart: the
    host's share of the CPUs drifts within a run. A variant measured once
    pairs with the first round."""
    ratios = [run / base for run, base in zip(runs, base_runs)]
    return statistics.median(ratios), min(ratios), max(ratios)


def add_ratios(results: dict[str, Any]) -> None:
    """Ratios against the no-rules reference, next to the raw figures."""
    bulk = results.get("bulk")
    if bulk:
        base = bulk["no rules"]
        for figures in bulk.values():
            for phase in BULK_PHASES:
                ratio, low, high = paired_ratios(figures[phase]["per_run"], base[phase]["per_run"])
                figures[phase].update(ratio=ratio, ratio_range=[low, high])
    for section, inverse in (("single", False), ("statements", True)):
        # Statements' microseconds as throughput, comparable with pgbench's
        # ratios and the target.
        variants = results.get(section)
        if variants:
            base = variants["no rules"]["per_run"]
            for figures in variants.values():
                paired = {
                    script: paired_ratios(base[script], runs) if inverse else paired_ratios(runs, base[script])
                    for script, runs in figures["per_run"].items()
                }
                figures["ratios"] = {script: ratio for script, (ratio, _, _) in paired.items()}
                figures["ratio_ranges"] = {script: [low, high] for script, (_, low, high) in paired.items()}
    connections = results.get("connections")
    if connections:
        # Paired connection by connection: the variants took turns.
        base = connections["no rules"]["per_connection"]
        for figures in connections.values():
            for script, runs in figures["per_connection"].items():
                figures[script]["added"] = {
                    run: statistics.median(ms - ref for ms, ref in zip(runs[run], base[script][run]))
                    for run in ("first", "again")
                }
    if "reads" in results:
        r = results["reads"]
        r["speedup"] = r["annotate"] / r["stored"]
    if "repair" in results:
        r = results["repair"]
        r["ratio"] = r["repair"] / r["group_by"]
    floors = results.get("floors")
    if floors:
        # Paired within each run, as the bulk rounds are.
        per_run = [_floor_ratios(run) for run in floors["runs"]]
        floors["ratios"] = {
            kind: {phase: statistics.median(r[kind][phase] for r in per_run) for phase in per_run[0][kind]}
            for kind in per_run[0]
        }
        floors["ratio_ranges"] = {
            kind: {
                phase: [min(r[kind][phase] for r in per_run), max(r[kind][phase] for r in per_run)]
                for phase in per_run[0][kind]
            }
            for kind in per_run[0]
        }
    for row in results.get("scaling", []):
        figures = row["dbrules"]
        figures["us_per_row"] = figures["seconds"] / row["rows"] * 1e6
        if "no rules" in row:
            row["ratio"] = figures["seconds"] / row["no rules"]["seconds"]


def _floor_ratios(run: dict[str, Any]) -> dict[str, dict[str, float]]:
    """One floors run against its own no-rules statements: the copy's lookup
    alone, every author rewritten once (each statement touches every author,
    and a count rewrites each once), the two together -- a DELETE copies
    nothing, so its floor is the parents alone -- dbrules, and dbrules over
    that floor."""
    base, parents = run["no rules"], run["parents rewritten"]
    lookup = {phase: run["copy lookup only"][phase] if phase in COPYING_PHASES else base[phase] for phase in base}
    ratios = {
        "copy lookup only": {phase: run["copy lookup only"][phase] / base[phase] for phase in base},
        "parents rewritten": {phase: 1 + parents / base[phase] for phase in base},
        "floor": {phase: (lookup[phase] + parents) / base[phase] for phase in base},
        "dbrules": {phase: run["dbrules"][phase] / base[phase] for phase in base},
    }
    ratios["over floor"] = {phase: ratios["dbrules"][phase] / ratios["floor"][phase] for phase in base}
    return ratios


def total_drift(results: dict[str, Any]) -> int:
    """Wrong values left by any maintaining variant (the no-rules reference
    maintains nothing, so its columns are expected to be stale)."""
    drift = 0
    for section in ("bulk", "single", "statements", "connections"):
        drift += sum(v.get("drift", 0) for k, v in results.get(section, {}).items() if k != "no rules")
    for section in ("reads", "repair", "floors"):
        drift += results.get(section, {}).get("drift", 0)
    for row in results.get("scaling", []):
        drift += row["dbrules"]["drift"]
    return drift


def _drift(variants: dict[str, Any], variant: str) -> str:
    return "(not maintained)" if variant == "no rules" else str(variants[variant]["drift"])


def _ratio(ratio: float, extremes: list[float]) -> str:
    """A ratio, and the range of the runs' ratios when they differ."""
    low, high = extremes
    spread = f" ({low:.2f}-{high:.2f})" if f"{low:.2f}" != f"{high:.2f}" else ""
    return f"{ratio:.2f}x{spread}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def tables(results: dict[str, Any]) -> str:
    """Plain-text tables, also pasted into docs/performance.md."""
    m = results["machine"]
    out = [f"PostgreSQL {m['postgresql']} ({m['server']}), Django {m['django']}, Python {m['python']}, "
           f"{m['cpus']} CPUs, {m['platform']}"]
    bulk = results.get("bulk")
    if bulk:
        variants = list(bulk)
        rows = []
        for phase in BULK_PHASES:
            rows.append([PHASE_LABELS[phase]] + [
                f"{bulk[v][phase]['seconds']:.2f}s " + _ratio(bulk[v][phase]["ratio"], bulk[v][phase]["ratio_range"])
                for v in variants
            ])
        rows.append(["queries from Django"] + [
            "/".join(f"{bulk[v][p]['queries']:.0f}" for p in BULK_PHASES) for v in variants
        ])
        rows.append(["peak RSS of the Python process"] + [f"{bulk[v]['peak_rss_mb']:.0f} MB" for v in variants])
        rows.append(["drift after the run"] + [_drift(bulk, v) for v in variants])
        rows.append(["rows measured"] + [f"{bulk[v]['rows']:,}" + ("*" if bulk[v]['rows'] != bulk['no rules']['rows'] else "") for v in variants])
        out += ["", f"Bulk writes, {bulk['no rules']['rows']:,} books over {results['settings']['authors']:,} authors "
                f"(median of {results['settings']['repeat']}, signals and computedfields once; ratios: the median "
                f"and range of each run's to the no-rules run of its round; "
                f"target for dbrules <= {TARGETS['bulk']}x)",
                _table(["phase"] + variants, rows)]
        if any(bulk[v]["rows"] != bulk["no rules"]["rows"] for v in variants):
            out.append("* one save() per row: run once on a fraction of the rows, seconds and queries scaled up")
    single = results.get("single")
    if single:
        variants = list(single)
        scripts = list(single["no rules"]["per_run"])
        rows = [[f"one-row {s}"] + [f"{single[v][s]:,.0f} tps " + _ratio(single[v]["ratios"][s], single[v]["ratio_ranges"][s])
                                    for v in variants] for s in scripts]
        rows.append(["failed transactions (deadlocks)"] + [
            "/".join(str(single[v]["failed"][s]) for s in scripts) for v in variants
        ])
        rows.append(["drift after the run"] + [_drift(single, v) for v in variants])
        s = results["settings"]
        out += ["", f"Single-row writes, pgbench {s['clients']} clients x {s['seconds']}s "
                f"(median of {s['repeat']}, ratios per round as above; target for dbrules >= {TARGETS['single']}x)",
                _table(["script"] + variants, rows)]
    statements = results.get("statements")
    if statements:
        variants = list(statements)
        scripts = list(statements["no rules"]["per_run"])
        rows = [[f"one-row {s}"] + [f"{statements[v][s]:.1f} us " + _ratio(statements[v]["ratios"][s],
                                                                          statements[v]["ratio_ranges"][s])
                                    for v in variants] for s in scripts]
        rows.append(["drift after the run"] + [_drift(statements, v) for v in variants])
        s = results["settings"]
        out += ["", f"Single-row writes, server time per statement: {s['statements']:,} statements each "
                f"committed in a PL/pgSQL loop (median of {s['repeat']}, ratios per round as throughput)",
                _table(["statement"] + variants, rows)]
    connections = results.get("connections")
    if connections:
        variants = list(connections)
        rows = []
        for script in connections["no rules"]["per_connection"]:
            for run, label in (("first", "first in the connection"), ("again", "then again")):
                rows.append([f"one-row {script}, {label}"] + [
                    f"{connections[v][script][run]:.2f} ms"
                    + (f" ({connections[v][script]['added'][run]:+.2f})" if v != "no rules" else "")
                    for v in variants
                ])
        rows.append(["drift after the run"] + [_drift(connections, v) for v in variants])
        out += ["", f"First writes: each statement first in a new connection, then again on other rows "
                f"(median of {results['settings']['connections']} connections per variant and statement; "
                f"in parentheses, the median difference from the no-rules connection of the same turn)",
                _table(["statement"] + variants, rows)]
    if "reads" in results:
        r = results["reads"]
        out += ["", f"Reads: top-50 authors by number of books, {results['settings']['read_books']:,} books "
                f"(target >= {TARGETS['reads']:.0f}x)",
                _table(["stored column + index", "annotate() fallback", "speed-up"],
                       [[f"{r['stored'] * 1000:.2f} ms", f"{r['annotate'] * 1000:.0f} ms", f"{r['speedup']:,.0f}x"]])]
    if "repair" in results:
        r = results["repair"]
        out += ["", f"Repair of every author over {results['settings']['read_books']:,} books (target <= {TARGETS['repair']}x)",
                _table(["dbrules.repair()", "one GROUP BY", "ratio"],
                       [[f"{r['repair']:.2f}s", f"{r['group_by']:.2f}s", f"{r['ratio']:.2f}x"]])]
    if results.get("scaling"):
        rows = []
        for row in results["scaling"]:
            base = row.get("no rules")
            rows.append([f"{row['rows']:,}", f"{row['parents']:,}",
                         f"{base['seconds']:.2f}s" if base else "",
                         f"{row['dbrules']['seconds']:.2f}s", f"{row['ratio']:.2f}x" if base else "",
                         f"{row['dbrules']['us_per_row']:.1f}"])
        out += ["", "Scaling: one INSERT ... SELECT (database side only)",
                _table(["rows", "authors", "no rules", "dbrules", "ratio", "dbrules us/row"], rows)]
    floors = results.get("floors")
    if floors:
        r, spread = floors["ratios"], floors["ratio_ranges"]

        def cell(kind: str, phase: str) -> str:
            return _ratio(r[kind][phase], spread[kind][phase])

        rows = [
            [
                phase,
                f"{floors['no rules'][phase]:.2f}s",
                cell("copy lookup only", phase) if phase in COPYING_PHASES else "(copies nothing)",
                cell("parents rewritten", phase),
                cell("floor", phase),
                f"{floors['dbrules'][phase]:.2f}s {cell('dbrules', phase)}",
                cell("over floor", phase),
            ]
            for phase in ("insert", "move", "delete")
        ]
        out += ["", f"Floors: INSERT ... SELECT of {results['settings']['books']:,} books, a move and a delete of "
                f"half, on the database side, against what any exact maintenance pays (every author rewritten "
                f"once: {floors['parents rewritten'] * 1000:.0f} ms; ratios paired within each run)",
                _table(["statement", "no rules", "+ copy lookup per row", "+ every author rewritten once",
                        "floor (both)", "dbrules", "dbrules / floor"], rows)]
    return "\n".join(out)


def _spread(ratios: list[float], extremes: list[list[float]]) -> list[list[float]]:
    """Error bars from each ratio down to its rounds' least and up to their greatest."""
    return [[r - low for r, (low, _) in zip(ratios, extremes)], [high - r for r, (_, high) in zip(ratios, extremes)]]


def chart(results: dict[str, Any], path: Path) -> None:
    """Bar chart of every ratio against no rules, the rounds' range as error
    bars, with the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 1.3]})
    bulk = results.get("bulk", {})
    variants = [v for v in bulk if v != "no rules"]
    width = 0.8 / max(1, len(variants))
    for i, variant in enumerate(variants):
        xs = [p + i * width for p in range(len(BULK_PHASES))]
        figures = [bulk[variant][p] for p in BULK_PHASES]
        left.bar(xs, [f["ratio"] for f in figures], width, label=variant,
                 yerr=_spread([f["ratio"] for f in figures], [f["ratio_range"] for f in figures]), capsize=2)
    left.axhline(1.0, color="black", linewidth=0.8)
    left.axhline(TARGETS["bulk"], color="red", linestyle="--", linewidth=0.8, label=f"target {TARGETS['bulk']}x")
    left.set_yscale("log")
    left.set_xticks([p + width * (len(variants) - 1) / 2 for p in range(len(BULK_PHASES))])
    left.set_xticklabels([PHASE_LABELS[p].replace(" (", "\n(") for p in BULK_PHASES])
    left.set_ylabel("time vs. no rules (log scale, lower is better)")
    left.set_title(f"Bulk writes, {results['settings']['books']:,} books")
    left.legend(fontsize=8)
    single = results.get("single", {})
    if single:
        scripts = list(single["no rules"]["ratios"])
        others = [v for v in single if v != "no rules"]
        w = 0.8 / max(1, len(others))
        for i, variant in enumerate(others):
            ratios = [single[variant]["ratios"][s] for s in scripts]
            right.bar([p + i * w for p in range(len(scripts))], ratios, w,
                      yerr=_spread(ratios, [single[variant]["ratio_ranges"][s] for s in scripts]), capsize=2,
                      label=variant, color=f"C{variants.index(variant)}" if variant in variants else "gray")
        right.axhline(1.0, color="black", linewidth=0.8)
        right.axhline(TARGETS["single"], color="red", linestyle="--", linewidth=0.8, label=f"target {TARGETS['single']}x")
        right.set_xticks([p + w * (len(others) - 1) / 2 for p in range(len(scripts))])
        right.set_xticklabels(scripts)
        highest = max(high for v in others for _, high in single[v]["ratio_ranges"].values())
        right.set_ylim(0, max(1.2, highest + 0.05))
        right.set_ylabel("throughput vs. no rules (higher is better)")
        right.set_title("Single-row writes (pgbench)")
        right.legend(fontsize=8)
    m = results["machine"]
    fig.suptitle(f"dbrules benchmark: PostgreSQL {m['postgresql']}, {m['cpus']} CPUs", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
