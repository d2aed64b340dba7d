"""PNG plots of a ``houseparty bench`` result (matplotlib, from the ``dev`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_results"]


def plot_results(results: dict[str, Any], folder: Path) -> list[Path]:
    """Writes the plots the results allow into ``folder``; the files written."""
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in (
        ("scale", _scale),
        ("calls", _calls),
        ("handoff", _handoff),
        ("walks", _walks),
        ("kill", _kill),
    ):
        if name in results:
            path = folder / f"{name}.png"
            plot(results[name], path)
            written.append(path)
    return written


def _scale(result: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = result["sizes"]
    sizes = [r["processes"] for r in rows]
    fig, (rate, mem) = plt.subplots(1, 2, figsize=(11, 4))
    rate.plot(sizes, [r["per_second"] for r in rows], "o-", label="measured")
    rate.axhline(20_000, color="tab:red", linestyle="--", label="target 20k/s")
    rate.set_xscale("log")
    rate.set_yscale("log")
    rate.set_xlabel("processes (rooms + people) on 3 pods")
    rate.set_ylabel("processes started and registered / s")
    rate.set_title("start + register rate")
    rate.legend()
    mem.plot(sizes, [r["python_bytes_per_process"] for r in rows], "o-", label="Python node")
    mem.plot(sizes, [r["sidecar_bytes_per_process"] for r in rows], "s-", label="sidecar (BEAM)")
    mem.axhline(1024, color="tab:red", linestyle="--", label="target 1 KiB (Python)")
    mem.set_xscale("log")
    mem.set_xlabel("processes (rooms + people) on 3 pods")
    mem.set_ylabel("RSS growth / process (bytes)")
    mem.set_title("memory per process")
    mem.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _calls(result: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    modes = ["sequential", "concurrent"]
    labels = ["1 caller", f"{result['concurrency']} callers"]
    fig, (rate, lat) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.38
    xs = range(len(modes))
    for offset, who, color in (
        (-width / 2, "python", "tab:blue"),
        (width / 2, "beam", "tab:orange"),
    ):
        rate.bar(
            [x + offset for x in xs],
            [result[who][m]["calls_per_second"] for m in modes],
            width,
            label=f"{who} worker",
            color=color,
        )
        lat.bar(
            [x + offset for x in xs],
            [result[who][m]["p99_us"] for m in modes],
            width,
            color=color,
            alpha=0.45,
            label=f"{who} p99",
        )
        lat.bar(
            [x + offset for x in xs],
            [result[who][m]["p50_us"] for m in modes],
            width,
            color=color,
            label=f"{who} p50",
        )
    for axis in (rate, lat):
        axis.set_xticks(list(xs), labels)
    rate.set_ylabel("gen_server calls / s")
    rate.set_title("calls from an erl node")
    rate.legend()
    lat.set_yscale("log")
    lat.set_ylabel("latency (us)")
    lat.set_title("p50 (solid) and p99 (light)")
    lat.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _handoff(result: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 4))
    points = result["timeline"]
    axis.plot([t for t, _ in points], [n for _, n in points], "-")
    axis.axhline(
        result["rooms_on_stopped_pod"],
        color="gray",
        linestyle=":",
        label=f"{result['rooms_on_stopped_pod']:,} rooms on pod 3",
    )
    axis.axvline(10, color="tab:red", linestyle="--", label="target 10 s (for 100k)")
    axis.set_xlabel("seconds after SIGTERM to pod 3")
    axis.set_ylabel("rooms of pod 3 held by pods 1-2")
    axis.set_title(
        f"graceful stop of 1 of 3 pods, {result['rooms']:,} rooms, {result['lost']} lost"
    )
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _walks(result: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = result["sidecar_walks"]
    callers = [str(r["callers"]) for r in rows]
    without = {r["callers"]: r["without"] for r in result["replication"]["rows"]}
    fig, (rate, latency, logs, clients) = plt.subplots(1, 4, figsize=(21, 4.5))
    width = 0.27
    xs = range(len(rows))
    sides = [
        ("BEAM baseline", [r["beam"] for r in rows], "tab:gray"),
        ("Python workers", [r["python"] for r in rows], "tab:blue"),
        ("Python, no replication", [without[r["callers"]] for r in rows], "tab:cyan"),
    ]
    for k, (label, figures, color) in enumerate(sides):
        rate.bar(
            [x + (k - 1) * width for x in xs],
            [f["per_second"] for f in figures],
            width,
            label=label,
            color=color,
        )
    rate.set_xticks(list(xs), callers)
    rate.set_xlabel("callers on the sidecars")
    rate.set_ylabel("walks / s")
    rate.set_title("walk rate")
    rate.legend()
    # Latency: p50 as the bar, p99 as the marker above it, BEAM next to Python.
    for k, (label, figures, color) in enumerate(sides[:2]):
        at = [x + (k - 0.5) * width for x in xs]
        latency.bar(at, [f["p50_us"] for f in figures], width, label=f"{label} p50", color=color)
        latency.plot(at, [f["p99_us"] for f in figures], "v", color=color, label=f"{label} p99")
    latency.set_xticks(list(xs), callers)
    latency.set_yscale("log")
    latency.set_xlabel("callers on the sidecars")
    latency.set_ylabel("walk latency (us)")
    latency.set_title("walk latency next to the BEAM baseline")
    latency.legend()
    growing = result["replication"]["growing_logs"]
    for side, label, color in (
        ("with", "Python workers", "tab:blue"),
        ("without", "Python, no replication", "tab:cyan"),
    ):
        steps = [r[side] for r in growing["rows"]]
        logs.plot(
            [s["log_length"] for s in steps],
            [s["per_second"] for s in steps],
            "o-",
            color=color,
            label=label,
        )
    logs.set_ylim(bottom=0)
    logs.set_xlabel("mean walks in a person's log")
    logs.set_ylabel("walks / s")
    logs.set_title(f"as logs grow: {growing['people']} people, {growing['callers']} callers")
    logs.legend()
    whos = [("Python clients", "python"), ("erl client (rpc)", "erlang")]
    clients.bar(
        [w for w, _ in whos],
        [result[k]["per_second"] for _, k in whos],
        color=["tab:blue", "tab:orange"],
    )
    clients.set_ylabel("walk_into / s")
    clients.set_title(f"from clients, {result['concurrency']} at once")
    fig.suptitle(f"walks, {result['rooms']} rooms, {result['people']:,} people")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _kill(result: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    runs = result["runs"]
    labels = [f"replica copies:\n{r['replica_copies']}" for r in runs]
    colors = ["tab:gray", "tab:blue"][: len(runs)]
    restarts = result.get("restarts", [])
    fig, axes = plt.subplots(1, 4 if restarts else 3, figsize=(16 if restarts else 12, 4))
    rate, lost, back = axes[:3]
    rates = result["rates"]
    rate.bar(labels, [rates[k]["walks_per_second"] for k in ("without", "with")], color=colors)
    without = rates["without"]["walks_per_second"]
    rate.axhline(0.7 * without, color="tab:red", linestyle="--", label="target 0.7x without")
    rate.set_ylabel("walk_into / s")
    rate.set_title(
        f"walk rate, {result['concurrency']} walkers,\nclusters in turns of "
        f"{rates['turn_seconds']:.0f} s"
    )
    rate.legend()
    lost.bar(labels, [r["acknowledged_walks_lost"] for r in runs], color=colors)
    lost.set_ylabel("walks answered ok, missing from the log")
    lost.set_title("acknowledged walks lost (target 0)")
    back.bar(labels, [r["every_name_answers_after_s"] or 0.0 for r in runs], color=colors)
    back.set_ylabel("seconds after SIGKILL")
    back.set_title("until every name answers again")
    if restarts:
        restarted = axes[3]
        for r in restarts:
            times, counts = zip(*r["samples"], strict=True) if r["samples"] else ((), ())
            restarted.plot(times, counts, marker=".", label=f"{r['rooms']:,} rooms, {r['killed']}")
        restarted.set_xlabel("seconds after SIGKILL")
        restarted.set_ylabel("names of pod 3 held again")
        restarted.set_title("restart at scale")
        restarted.legend()
    fig.suptitle(f"pod 3 of 3 killed, {result['people']:,} people, {result['rooms']} rooms")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
