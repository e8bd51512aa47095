"""One scoreboard: every benchmark run with its defaults, the twin beside each anchor, written to
one page (``probtwin bench report``).

Each entry of :data:`ENTRIES` is one comparison on one data set. Its result is kept as a JSON file
(the figures, the budget, the machine, the commit and the date of the run) so that a long
scoreboard can be run in parts and resumed; the page is always rendered from every result
present, so the figures the docs quote come from this one command.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probtwin.errors import DataError

__all__ = ["DEVELOPMENT", "DEVELOPMENT_SEEDS", "ENTRIES", "render_scoreboard", "role", "run_entry", "run_report"]

#: Development sets (settings may be tuned on them) and simulation seeds; every other set is an
#: evaluation set.
DEVELOPMENT = {"cowley_v4_201025", "chewie_0"}
DEVELOPMENT_SEEDS = range(5)

#: The comparisons of the scoreboard: ``kind:data``.
ENTRIES = (
    "image:cowley_v4_201025",
    "image:cowley_v4_210224",
    "image:cowley_v4_210325",
    "image:tang_v1",
    "image:allen_v1",
    "motor:chewie_0",
    "motor:chewie_1",
    "states:seeds_5-9",
)


def role(data: str) -> str:
    """``"development"`` or ``"evaluation"`` for a data set name of :data:`ENTRIES`; a range of
    simulation seeds is development if it holds any of :data:`DEVELOPMENT_SEEDS`."""
    if data.startswith("seeds_"):
        return "development" if set(_seeds(data)) & set(DEVELOPMENT_SEEDS) else "evaluation"
    return "development" if data in DEVELOPMENT else "evaluation"


def _seeds(data: str) -> tuple[int, ...]:
    try:
        first, last = (int(v) for v in data.removeprefix("seeds_").split("-"))
    except ValueError:
        raise DataError("entry", "states:seeds_<first>-<last>, e.g. states:seeds_5-9", repr(data)) from None
    return tuple(range(first, last + 1))


def _image(data: str, time_limit: float, seed: int, max_epochs: int | None, size: dict) -> dict:
    from probtwin.bench.accuracy import compare_with_anchor

    row = compare_with_anchor(data, seed, max_epochs or 200, time_limit)
    return {
        "twin": row["single_trial_correlation"],
        "anchor": row["anchor_correlation"],
        "ridge": row["ridge_correlation"],
        "twin_epochs": row["epochs"],
        "anchor_epochs": row["anchor_epochs"],
        "twin_seconds": row["fit_seconds"],
        "anchor_seconds": row["anchor_seconds"],
        "coverage_90": row["coverage_90"],
    }


def _motor(data: str, time_limit: float, seed: int, max_epochs: int | None, size: dict) -> dict:
    from probtwin.bench.motor import run_real

    monkey, session = data.rsplit("_", 1)
    out = run_real(monkey, int(session), max_epochs=max_epochs, time_limit=time_limit, seed=seed, verbose=False)
    return {
        "twin": out["twin_velocity_r2"],
        "ridge": out["ridge_velocity_r2"],
        "gru": out["gru_velocity_r2"],
        "twin_setting": f"behaviour weight {out['twin_behavior_weight']:g}",
        "ridge_setting": out["ridge_window"],
        "gru_setting": out["gru_setting"],
        "twin_seconds": out["fit_seconds"],
        "gru_seconds": out["gru_fit_seconds"],
        "coverage_90": out["velocity_coverage_90"],
        "co_smoothing_bits_per_spike": out["co_smoothing_bits_per_spike"],
    }


def _states(data: str, time_limit: float, seed: int, max_epochs: int | None, size: dict) -> dict:
    from probtwin.bench.experiments import fit_state_twin, state_test
    from probtwin.simulate import v1

    found = {"twin": [], "classical": []}
    for s in _seeds(data):
        sim = v1(**size, seed=s, pupil_shift_fraction=0.2)
        twin = fit_state_twin(sim, time_limit, s, max_epochs=max_epochs or 300)
        test = state_test(twin, sim, deltas=(5.0,), seed=s)
        found["twin"].append(test["twin_delta_5.0"])
        found["classical"].append(test["classical"])
    out: dict[str, Any] = {"simulation": f"{size['n_neurons']} neurons, {size['n_images']} images, per seed"}
    for side, rates in found.items():
        for key in ("fdr", "power"):
            out[f"{side}_{key}"] = float(np.mean([r[key] for r in rates]))
        out[f"{side}_fdr_per_seed"] = [float(r["fdr"]) for r in rates]
    return out


HERE = Path(__file__).parent

_RUNNERS: dict[str, Callable[..., dict]] = {"image": _image, "motor": _motor, "states": _states}


def _machine() -> dict:
    """The run's commit (``+changes`` where the package differs from it), date and machine."""
    try:
        git = ["git", "-C", str(HERE)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        changed = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "."], capture_output=True).returncode != 0
        commit = commit.stdout.strip() + ("+changes" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "commit": commit,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
    }


def run_entry(
    entry: str,
    time_limit: float = 900.0,
    seed: int = 0,
    max_epochs: int | None = None,
    n_neurons: int = 100,
    n_images: int = 2500,
) -> dict:
    """Run one comparison of :data:`ENTRIES` (or another ``kind:data`` of the same kinds).

    Parameters
    ----------
    entry : str
        ``"image:<name of probtwin.bench.accuracy.DATASETS>"``, ``"motor:<monkey>_<session>"``
        or ``"states:seeds_<first>-<last>"``.
    time_limit : float
        Seconds of each fit (the twin's and each baseline's alike).
    max_epochs : int, optional
        Epoch cap of each fit; default that of each benchmark (200 image, 400 motor, 300 states).
    n_neurons, n_images : int
        Size of each simulation of a ``states`` entry.

    Returns
    -------
    dict
        ``entry``, ``kind``, ``data``, ``role``, ``budget_seconds`` (each side's fit), the
        figures of each side, and the run's ``commit``, ``date``, ``machine``.
    """
    kind, _, data = entry.partition(":")
    if kind not in _RUNNERS or not data:
        raise DataError("entry", f"kind:data with kind one of {tuple(_RUNNERS)}, e.g. {ENTRIES[0]!r}", repr(entry))
    start = time.perf_counter()
    size = {"n_neurons": int(n_neurons), "n_images": int(n_images)}
    figures = _RUNNERS[kind](data, time_limit, seed, max_epochs, size)
    return {
        "entry": entry,
        "kind": kind,
        "data": data,
        "role": role(data),
        "budget_seconds": float(time_limit),
        **figures,
        "wall_seconds": time.perf_counter() - start,
        **_machine(),
    }


def _f(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _image_cells(r: dict) -> list[str]:
    lead = f"{r['twin'] - r['anchor']:+.3f}"
    return [
        f"{_f(r['twin'])} ({r['twin_epochs']} ep.)",
        f"{_f(r['anchor'])} ({r['anchor_epochs']} ep.)",
        _f(r["ridge"]),
        lead,
    ]


def _motor_cells(r: dict) -> list[str]:
    best = max(("ridge", "gru"), key=lambda b: r[b])
    return [
        f"{_f(r['twin'])} ({r['twin_setting']})",
        f"{_f(r['ridge'])} ({r['ridge_setting']})",
        f"{_f(r['gru'])} ({r['gru_setting']})",
        f"{r['twin'] - r[best]:+.3f} ({best})",
    ]


def _state_cells(r: dict) -> list[str]:
    return [_f(r[k]) for k in ("twin_fdr", "twin_power", "classical_fdr", "classical_power")]


#: Per kind: the table's title, the text under it, its columns after data, role and budget, and
#: the cells of a result.
_TABLES: dict[str, tuple[str, str, tuple[str, ...], Callable[[dict], list[str]]]] = {
    "image": (
        "Image twin: test single-trial correlation",
        "No side finds stimulus signal in Allen V1, nor does a leave-one-out ridge on local luminance\n"
        "and contrast (see [Datasets](datasets.md)): that row checks that no side finds structure where\n"
        "there is none, and ranks nothing.\n",
        ("twin", "Sensorium 2022 anchor", "ridge on pixels", "twin − anchor"),
        _image_cells,
    ),
    "motor": (
        "Motor twin: test R² of decoded hand velocity",
        "",
        ("twin", "ridge, lags and leads", "GRU", "twin − best baseline"),
        _motor_cells,
    ),
    "states": (
        "State tests: which neurons change preferred orientation with pupil (alpha 0.05)",
        "The twin tests from its recording alone (delta 5 degrees); the classical experiment records 10\n"
        "repeats of every grating in both states from the simulator and runs a permutation test + BH.\n",
        ("twin FDR", "twin power", "classical FDR", "classical power"),
        _state_cells,
    ),
}


def render_scoreboard(rows: Sequence[dict]) -> str:
    """The scoreboard page (Markdown) from the results of :func:`run_entry`, in :data:`ENTRIES`
    order: one table per kind, the twin beside each anchor and the twin's lead over the best."""
    order = {e: i for i, e in enumerate(ENTRIES)}
    rows = sorted(rows, key=lambda r: (order.get(r["entry"], len(order)), r["entry"]))
    out = [
        "# Scoreboard",
        "",
        "Written by `probtwin bench report` from the results in `docs/scoreboard/` (one JSON file per",
        "row, with the commit, date and machine of its run). Every side runs with its defaults; every",
        "hyperparameter of every side is chosen on the validation tier; the test tier is scored once.",
        "Development sets may have been used to tune defaults; evaluation sets were not (see",
        "[Benchmarks](benchmarks.md)). The budget is the seconds of each fit, the same for every side.",
        "",
    ]
    for kind, (title, intro, columns, cells) in _TABLES.items():
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        out += [f"## {title}", "", *([intro] if intro else [])]
        out += [
            "| " + " | ".join(("data", "role", "budget (s)", *columns, "run")) + " |",
            "|---" * (len(columns) + 4) + "|",
        ]
        for r in mine:
            data = r["data"] + (f" ({r['simulation']})" if "simulation" in r else "")
            run = f"{r['commit']}, {r['date']}"
            out.append("| " + " | ".join((data, r["role"], f"{r['budget_seconds']:.0f}", *cells(r), run)) + " |")
        out.append("")
    machines = sorted({r["machine"] for r in rows})
    out += ["Machines: " + "; ".join(machines) + "." if machines else "No results yet.", ""]
    out += [
        "## Reproduce",
        "",
        "```python",
        "from probtwin.bench import report",
        "",
        "print(report.ENTRIES)  # report.run_report() runs them all: hours on two CPU cores",
        "```",
    ]
    return "\n".join(out) + "\n"


def _load(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def run_report(
    entries: Sequence[str] | None = None,
    results: str | Path = "docs/scoreboard",
    page: str | Path = "docs/pages/scoreboard.md",
    time_limit: float = 900.0,
    seed: int = 0,
    log: Callable[[str], None] = print,
    **options: Any,
) -> list[dict]:
    """Run each entry (default: all of :data:`ENTRIES`; ``options`` those of :func:`run_entry`), write its result to
    ``results/<kind>_<data>.json``, and render the page from every result in ``results``.

    Entries whose data are absent are reported and skipped; the others' results are kept.

    Returns
    -------
    list of dict
        Every result in ``results`` after the run (those of earlier runs included).
    """
    folder = Path(results)
    folder.mkdir(parents=True, exist_ok=True)
    for entry in entries if entries is not None else ENTRIES:
        try:
            row = run_entry(entry, time_limit, seed, **options)
        except FileNotFoundError as err:
            log(f"{entry}: skipped ({err})")
            continue
        (folder / f"{entry.replace(':', '_')}.json").write_text(json.dumps(row, indent=1) + "\n")
        log(f"{entry}: " + ", ".join(f"{k} {_f(v)}" for k, v in row.items() if isinstance(v, float)))
    rows = _load(folder)
    Path(page).parent.mkdir(parents=True, exist_ok=True)
    Path(page).write_text(render_scoreboard(rows))
    return rows
