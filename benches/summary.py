#!/usr/bin/env python3
"""Folds the scenarios' results (benches/results/<name>[.quick].json, and the
client benchmarks' markdown for scenario 7) into benches/results/summary.md and
summary.png (summary.quick.* with --quick). benches/run_all.py calls it after a
run; run it alone to redraw from the files there:

    python benches/summary.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402

TITLES = {
    "1": "Full-table read",
    "2": "Cross-language transfer",
    "3": "Selective read",
    "4": "Time to first batch",
    "5": "Concurrency",
    "6": "Push hashing",
    "7": "Clients (DataLoader, Spark)",
    "8": "TLS and authentication",
    "9": "Packages of many small files",
    "10": "Replicas",
}
NAMES = {
    "1": "flight_read",
    "2": "transfer",
    "3": "selective",
    "4": "ttfb",
    "5": "concurrency",
    "6": "push_hash",
    "8": "tls",
    "9": "scale",
    "10": "replicas",
}
CLIENTS_AFTER = "6"  # scenario 7 (the clients' own scripts) is listed after this one
RATIO_CELL = re.compile(r"^\s*\**\s*(\d+(?:\.\d+)?)\s*x\s*\**\s*$")


def load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def md_tables(text: str) -> list[list[list[str]]]:
    """Markdown tables of a document, as lists of rows of cells (separator rows dropped)."""
    tables, cur = [], []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|") and s.endswith("|"):
            cells = [c.strip() for c in s[1:-1].split("|")]
            if all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
                continue
            cur.append(cells)
        elif cur:
            tables.append(cur)
            cur = []
    if cur:
        tables.append(cur)
    return tables


def client_section(suffix: str, run: dict | None) -> tuple[list[h.Row], list[str]]:
    """Scenario 7: rows for the summary table and the clients' own tables."""
    rows, detail = [], []
    clients = (run or {}).get("clients") or {}
    if not clients:
        from run_all import CLIENTS

        clients = {name: {"title": title, "status": "not run"} for name, title in CLIENTS}
    for name, c in clients.items():
        status = c.get("status", "not run")
        if status != "ran":
            rows.append(h.Row(c["title"], status, "-", "-", "-", status.split(" (")[0]))
            detail += [f"**{c['title']}** (`benches/{name}.py`): {status}.", ""]
            continue
        md = h.RESULTS / c.get("md", f"{name}{suffix}.md")
        text = md.read_text() if md.exists() else ""
        found = False
        for table in md_tables(text):
            for cells in table[1:]:
                ratio = next((m.group(1) for m in map(RATIO_CELL.match, cells) if m), None)
                if ratio is not None:
                    rows.append(
                        h.Row(
                            f"{c['title']}: {cells[0]}",
                            "see section 7",
                            "see section 7",
                            f"{float(ratio):.2f}x",
                            "-",
                            "info",
                        )
                    )
                    found = True
        if not found:
            rows.append(h.Row(c["title"], "see section 7", "see section 7", "n/a", "-", "info"))
        body = [line for line in text.splitlines() if not line.startswith("# ")]
        detail += [f"**{c['title']}** (`benches/{name}.py`, {c.get('seconds', '?')} s):", "", *body, ""]
    return rows, detail


def build(quick: bool) -> Path:
    suffix = ".quick" if quick else ""
    run = load(h.RESULTS / f"run{suffix}.json")
    results = {num: load(h.RESULTS / f"{name}{suffix}.json") for num, name in NAMES.items()}
    ran = (run or {}).get("scenarios", {})
    m = (run or {}).get("started") or next((r["machine"] for r in results.values() if r), h.machine())
    end = (run or {}).get("ended") or {}
    binary = (run or {}).get("binary") or next((r["binary"] for r in results.values() if r), h.binary_facts())

    client_rows, client_detail = client_section(suffix, run)
    rows: list[tuple[str, h.Row]] = []
    for num in NAMES:
        r = results[num]
        info = ran.get(num)
        if info and not info["ok"]:
            rows.append((num, h.Row(TITLES[num], f"FAILED (exit {info['exit']})", "-", "-", "-", "failed")))
        elif r is None:
            rows.append((num, h.Row(TITLES[num], "not run", "-", "-", "-", "-")))
        else:
            rows += [(num, h.Row(**row)) for row in r["rows"]]
        if num == CLIENTS_AFTER:
            rows += [("7", r) for r in client_rows]

    lines = [f"# Sheaf benchmarks ({'quick: small data, for CI; figures are not meaningful' if quick else 'full'})", ""]
    when = m["date"] + (f" to {end['date'][-5:]}" if end.get("date") else "")
    dur = f" ({run['seconds'] / 60:.0f} min)" if run and run.get("seconds") else ""
    lines += [
        f"- **When**: {when}{dur}, `{(run or {}).get('command', 'benches/run' + (' --quick' if quick else ''))}`.",
        f"- **Machine**: {m['cores']} cores ({m['cpu']}), {m['memory_gib']:.0f} GiB memory, {m['arch']}, "
        f"Linux {m['kernel']}; Python {m['python']}, pyarrow {m['pyarrow']}; loopback only.",
        f"- **Load**: load average {m['loadavg']} at the start"
        + (f", {end['loadavg']} at the end" if end else "")
        + (
            f"; busiest other processes at the start: {', '.join(run['busy_at_start'])}"
            if run and run.get("busy_at_start")
            else ""
        )
        + ".",
        f"- **Sheaf**: commit {binary['commit']}, binary `{binary['sheaf_bin']}` ({binary['sheaf_bin_mtime']}).",
        *[
            f"- **Re-run** of scenario(s) {', '.join(r['only'])} at {r['date']} (load average {r['loadavg']}; binary "
            f"{r['binary']['sheaf_bin_mtime']}, commit {r['binary']['commit']})."
            for r in (run or {}).get("reruns", [])
        ],
        "",
        "Ratios compare figures measured side by side in this run (absolute figures drift ~20% between runs on "
        "this shared 2-core machine). Every ratio is oriented so that above 1 means Sheaf is ahead, except three "
        "that are Sheaf against a bound: bytes read / bytes needed (3), large / small table (4) and peak RSS / "
        "2 GiB (5); most of 8 is Sheaf against itself (throughput over TLS or with --auth / plaintext without, "
        "1.0 meaning no cost); 10 is Sheaf against itself too (three replicas with rendezvous placement against one "
        "replica and against round-robin placement). Figures are medians (min-max) unless one sample.",
        "",
        *h.md_table(
            ["#", "measurement", "Sheaf", "baseline", "ratio", "goal", "status"],
            [
                [
                    n,
                    r.what,
                    r.sheaf,
                    r.baseline,
                    r.ratio,
                    r.goal,
                    f"**{r.status}**" if r.status in ("short", "failed") else r.status,
                ]
                for n, r in rows
            ],
        ),
        "",
        f"![benchmark plot](summary{suffix}.png)",
        "",
    ]
    short = [(n, r) for n, r in rows if r.status in ("short", "failed")]
    if short:
        lines += ["## Where Sheaf falls short", ""]
        for n, r in short:
            lines.append(f"- **{n}. {r.what}**: {r.sheaf} against {r.baseline} ({r.ratio}; goal {r.goal}).")
        lines.append("")
        for n in dict.fromkeys(n for n, _ in short):
            notes = (results.get(n) or {}).get("notes") or []
            if notes:
                lines += [f"Why ({n}. {TITLES[n]}), from the measurements:", "", *[f"- {x}" for x in notes], ""]
    for num in NAMES:
        r = results[num]
        lines += [f"## {num}. {r['title'] if r else TITLES[num]}", ""]
        if r is None:
            info = ran.get(num)
            lines += [f"Failed (exit {info['exit']}); see the run's log." if info else "Not run.", ""]
        else:
            lines += [*r["detail"], ""]
            if r["notes"]:
                lines += ["Notes:", "", *[f"- {n}" for n in r["notes"]], ""]
        if num == CLIENTS_AFTER:
            lines += ["## 7. Clients", "", *client_detail]
    out = h.RESULTS / f"summary{suffix}.md"
    out.write_text("\n".join(lines).rstrip() + "\n")
    plot(results, rows, h.RESULTS / f"summary{suffix}.png", m, quick)  # after the table is written
    h.progress(f"wrote {out} and summary{suffix}.png")
    return out


def _short(label: str, n: int = 34) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def plot(results: dict, rows: list, path: Path, m: dict, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(18, 10.5))
    fig.suptitle(
        f"Sheaf benchmarks{' (quick)' if quick else ''}: {m['date']}, {m['cores']} cores, "
        f"{m['memory_gib']:.0f} GiB, {m['cpu']}",
        fontsize=13,
    )
    sheaf_c, base_c = "#1f77b4", "#bbbbbb"

    def empty(ax, title):
        ax.set_title(title)
        ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()

    def hbars(ax, bars, unit, title, log=False):
        labels = [_short(b["label"], 44) for b in bars][::-1]
        med = [b["median"] for b in bars][::-1]
        lo = [b["median"] - b["min"] for b in bars][::-1]
        hi = [b["max"] - b["median"] for b in bars][::-1]
        colors = [
            sheaf_c if b["label"].startswith("Sheaf") or b["label"].startswith("sheaf") else base_c for b in bars
        ][::-1]
        ax.barh(labels, med, xerr=[lo, hi], color=colors, capsize=3)
        tops = [b["max"] for b in bars][::-1]
        for y, (v, top) in enumerate(zip(med, tops, strict=False)):
            ax.text(top, y, f"  {v:.3g}", va="center", fontsize=8)
        ax.set_xlabel(unit)
        if log:
            ax.set_xscale("log")
            ax.set_xlim(min(b["min"] for b in bars) / 2, max(tops) * 4)
        else:
            ax.set_xlim(0, max(tops) * 1.2)
        ax.set_title(title)
        ax.tick_params(axis="y", labelsize=8)

    r1 = results.get("1")
    if r1:
        hbars(axes[0, 0], r1["plot"]["bars"], "GB/s (median, min-max)", "1. Full-table read")
    else:
        empty(axes[0, 0], "1. Full-table read")

    r2 = results.get("2")
    if r2:
        hbars(axes[0, 1], r2["plot"]["bars"], "seconds (log)", "2. Transfer into the client", log=True)
    else:
        empty(axes[0, 1], "2. Transfer")

    r3 = results.get("3")
    ax = axes[0, 2]
    if r3:
        bars = [b for b in r3["plot"]["bytes"] if b["value"] is not None]
        labels = [_short(b["label"], 44) for b in bars][::-1]
        vals = [b["value"] / 1e6 for b in bars][::-1]
        colors = [
            "#2ca02c" if b["label"].startswith("needed") else sheaf_c if b["label"].startswith("Sheaf") else base_c
            for b in bars
        ][::-1]
        ax.barh(labels, vals, color=colors)
        for y, v in enumerate(vals):
            ax.text(v, y, f" {v:.3g} MB", va="center", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("MB read from storage (log)")
        ax.set_title("3. Selective read: bytes read")
        ax.tick_params(axis="y", labelsize=8)
    else:
        empty(ax, "3. Selective read")

    r4 = results.get("4")
    ax = axes[1, 0]
    if r4:
        groups = r4["plot"]["groups"]
        import numpy as np

        x = np.arange(len(groups))
        small = [g["small"]["median"] for g in groups]
        large = [g["large"]["median"] for g in groups]
        ax.bar(x - 0.2, small, 0.4, label=r4["plot"].get("small_label", "small"), color="#9ecae1")
        ax.bar(x + 0.2, large, 0.4, label=r4["plot"].get("large_label", "large"), color="#3182bd")
        ax.set_xticks(x, [g["label"] for g in groups], fontsize=8, rotation=25, ha="right")
        ax.set_ylabel("ms to first batch (log)")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set_title("4. Time to first batch")
    else:
        empty(ax, "4. Time to first batch")

    r5 = results.get("5")
    ax = axes[1, 1]
    if r5:
        levels = r5["plot"]["levels"]
        ax2 = ax.twinx()
        for (kind, s), c in zip(r5["plot"]["series"].items(), ["#9ecae1", sheaf_c, "#7f7f7f"], strict=False):
            name = (
                "Sheaf, first reads"
                if "first" in kind
                else "Sheaf, repeated"
                if kind.startswith("Sheaf")
                else "pyarrow in-memory"
            )
            ax.plot(levels, s["gbps"], marker="o", color=c, label=f"{name}: GB/s")
            ax2.plot(
                levels, [v / 1e6 for v in s["hwm"]], marker="s", linestyle="--", color=c, label=f"{name}: peak RSS"
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(v) for v in levels])
        ax.set_xlabel("clients", labelpad=0)
        ax.set_ylabel("aggregate GB/s (solid)")
        ax2.set_ylabel("server peak RSS MB (dashed)")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=7)
        ax.set_ylim(bottom=0)
        ax2.set_ylim(bottom=0)
        ax.set_title("5. Concurrency")
    else:
        empty(ax, "5. Concurrency")

    ax = axes[1, 2]
    goal_rows = [(n, r) for n, r in rows if r.goal not in ("-", "") and RATIO_CELL.match(r.ratio or "")]
    if goal_rows:
        labels = [_short(f"{n}. {r.what}", 46) for n, r in goal_rows][::-1]
        vals = [float(RATIO_CELL.match(r.ratio).group(1)) for _, r in goal_rows][::-1]
        colors = ["#2ca02c" if r.status == "met" else "#d62728" for _, r in goal_rows][::-1]
        ax.barh(labels, vals, color=colors)
        for y, (v, (_, r)) in enumerate(zip(vals, goal_rows[::-1], strict=False)):
            ax.text(
                v,
                y,
                f" {v:.2f}x, goal {r.goal.replace('large <= 1.5x small + 5 ms', '<= 1.5x + 5 ms')}",
                va="center",
                fontsize=8,
            )
        ax.axvline(1.0, color="#555555", linewidth=0.8, linestyle=":")
        ax.set_xlabel("ratio (green: goal met, red: short)")
        ax.set_title("Goals")
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlim(0, max(vals + [2.0]) * 1.9)
    else:
        empty(ax, "Goals")

    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    build(ap.parse_args().quick)


if __name__ == "__main__":
    main()
