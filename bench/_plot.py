"""The benchmark figure: one PNG with a panel per benchmark, drawn from the JSON document.

matplotlib is the optional ``bench`` extra (``make bench`` installs it; ``make test`` does
not): it is imported only here, only when a plot is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

Rows = list[dict[str, Any]]


def matplotlib_missing() -> str | None:
    """None when matplotlib can be imported, else one line saying how to get it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "no plot: matplotlib is not installed (make bench installs the bench extra)"
    return None


def _bars(ax: Any, labels: list[str], values: list[float], title: str, unit: str,
          log: bool = False) -> None:
    ax.barh(range(len(values)), values, color="#4a7ab5")
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(unit, fontsize=8)
    if log:
        ax.set_xscale("log")
    for i, value in enumerate(values):
        ax.annotate(f"{value:.3g}", (value, i), fontsize=6, va="center",
                    xytext=(2, 0), textcoords="offset points")


def _ipc(ax: Any, rows: Rows) -> None:
    chosen = [r for r in rows if r["node"] == "sandboxed"]
    _bars(ax, [f"{r['label']}: {r['path']}" for r in chosen],
          [r["median"] for r in chosen], "IPC round trip (sandboxed node), median",
          "µs per call (log)", log=True)


def _spawn(ax: Any, rows: Rows) -> None:
    _bars(ax, [f"{r['label'].replace('bitcoin-supervisor-', '')} [{r['variant']}]"
               for r in rows], [r["median"] for r in rows],
          "spawn to first Echo answer, median (fork server: branch fork)", "ms")


def _restart(ax: Any, rows: Rows) -> None:
    chosen = [r for r in rows if "daemon log" in r["label"] or "answered" in r["label"]
              or "CLI" in r["label"]]
    _bars(ax, [f"{r['label'].replace('kill -9 ', '').replace(' (daemon log clock)', '')}"
               f" [{r['variant']}]" for r in chosen], [r["median"] for r in chosen],
          "crash to restored, median (target: wallet RPC <= 20 ms)", "ms")


def _scale(ax: Any, rows: Rows) -> None:
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        ax.plot([r["wallets"] for r in mine], [r["median"] for r in mine], marker="o",
                label=label)
    ax.set_xlabel("wallet components", fontsize=8)
    ax.set_ylabel("status latency, ms (median)", fontsize=8)
    ax.set_title("status latency and supervisor RSS vs wallets", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    rss = {r["wallets"]: r["supervisor_rss_mib"] for r in rows}
    twin = ax.twinx()
    twin.plot(list(rss), list(rss.values()), color="grey", linestyle="--", marker="x")
    twin.set_ylabel("supervisor RSS, MiB (dashed)", fontsize=8)


def _memory(ax: Any, rows: Rows, idle_rows: Rows) -> None:
    chosen = [r for r in rows if r["variant"] in ("sandboxed", "-")]
    labels = [r["label"] for r in chosen]
    values = [r["median"] for r in chosen]
    title = "resident memory after start (sandboxed), median"
    if idle_rows:
        wakeups = idle_rows[0]["median"]
        title += f"; idle supervisor: {wakeups:g} wakeups/s"
    _bars(ax, labels, values, title + " (goal 30 MiB)", "MiB")


def write_plot(document: dict[str, Any], path: Path) -> Path:
    """Draw every benchmark present in ``document`` into the PNG ``path``; return it.
    Raises ImportError without matplotlib (see ``matplotlib_missing``), OSError."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    benchmarks = document["benchmarks"]
    panels: list[tuple[str, Callable[[Any, Rows], None]]] = [
        ("echo_direct_vs_brokered", _ipc), ("spawn_to_init", _spawn),
        ("restart_latency", _restart), ("scale", _scale)]
    present = [(name, draw) for name, draw in panels if name in benchmarks]
    with_memory = "rss" in benchmarks
    count = len(present) + with_memory
    if count == 0:
        raise ValueError("no benchmark in the document has a plot")
    columns = 2 if count > 1 else 1
    rows_n = (count + columns - 1) // columns
    fig, axes = plt.subplots(rows_n, columns, figsize=(8 * columns, 4.2 * rows_n),
                             squeeze=False)
    flat = list(axes.flat)
    for ax, (name, draw) in zip(flat, present, strict=False):
        draw(ax, benchmarks[name]["rows"])
    if with_memory:
        _memory(flat[len(present)], benchmarks["rss"]["rows"],
                benchmarks.get("idle", {}).get("rows", []))
    for ax in flat[count:]:
        ax.set_visible(False)
    machine = document["machine"]
    fig.suptitle(f"bitcoin-supervisor benchmarks, {document['started_at']} — "
                 f"{machine['nproc']} CPUs, Python {machine['python']}, kernel "
                 f"{machine['kernel']}, load {machine['loadavg_1m']} at start", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
