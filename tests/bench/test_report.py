import json

import numpy as np
import pytest

from probtwin import DataError
from probtwin.bench import report
from probtwin.cli import main


def _row(kind, data, **figures):
    return {
        "entry": f"{kind}:{data}",
        "kind": kind,
        "data": data,
        "role": report.role(data),
        "budget_seconds": 60.0,
        "commit": "abc1234",
        "date": "2026-12-01",
        "machine": "x86_64, 2 CPUs, 2 torch threads",
        **figures,
    }


def test_roles_follow_the_development_split():
    assert report.role("cowley_v4_201025") == "development" and report.role("chewie_0") == "development"
    assert report.role("seeds_0-4") == "development" and report.role("seeds_4-6") == "development"
    for data in ("cowley_v4_210224", "cowley_v4_210325", "tang_v1", "allen_v1", "chewie_1", "seeds_5-9"):
        assert report.role(data) == "evaluation"


def test_the_scoreboard_puts_the_twin_beside_the_best_baseline():
    rows = [
        _row(
            "motor", "chewie_1", twin=0.70, ridge=0.64, gru=0.79, twin_setting="w", ridge_setting="r", gru_setting="g"
        ),
        _row("image", "tang_v1", twin=0.50, anchor=0.45, ridge=0.30, twin_epochs=7, anchor_epochs=3),
        _row(
            "states",
            "seeds_5-9",
            simulation="s",
            twin_fdr=0.04,
            twin_power=0.6,
            classical_fdr=0.02,
            classical_power=1.0,
        ),
    ]
    page = report.render_scoreboard(rows)
    assert page.index("## Image twin") < page.index("## Motor twin") < page.index("## State tests")
    assert "| tang_v1 | evaluation | 60 | 0.500 (7 ep.) | 0.450 (3 ep.) | 0.300 | +0.050 |" in page
    assert "| -0.090 (gru) |" in page  # the better of the two decoders, not the ridge
    assert "| 0.040 | 0.600 | 0.020 | 1.000 |" in page


def test_a_malformed_entry_is_a_data_error():
    with pytest.raises(DataError, match="entry"):
        report.run_entry("decoding:chewie_0")
    with pytest.raises(DataError, match="seeds_"):
        report.run_entry("states:five", time_limit=1.0)


def test_the_report_runs_entries_keeps_results_and_renders_all(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("PROBTWIN_DATA", str(shared_data))
    results, page = tmp_path / "results", tmp_path / "scoreboard.md"
    results.mkdir()
    earlier = _row("image", "tang_v1", twin=0.5, anchor=0.4, ridge=0.3, twin_epochs=9, anchor_epochs=4)
    (results / "image_tang_v1.json").write_text(json.dumps(earlier))
    lines = []
    rows = report.run_report(["image:allen_v1"], results, page, time_limit=30.0, max_epochs=1, log=lines.append)
    assert {r["entry"] for r in rows} == {"image:allen_v1", "image:tang_v1"}  # the earlier result is kept
    new = json.loads((results / "image_allen_v1.json").read_text())
    assert new["role"] == "evaluation" and new["twin_epochs"] == 1 and new["anchor_epochs"] == 1
    assert np.isfinite(new["twin"]) and np.isfinite(new["anchor"]) and len(new["commit"]) > 0
    text = page.read_text()
    assert f"| allen_v1 | evaluation | 30 | {new['twin']:.3f} (1 ep.) | {new['anchor']:.3f} (1 ep.)" in text
    assert "| tang_v1 |" in text and lines[0].startswith("image:allen_v1")
    # the command line renders the page from the results without running anything
    page.unlink()
    assert main(["bench", "report", "--entries", "--results", str(results), "--page", str(page)]) == 0
    assert page.read_text() == text


def test_the_state_entry_scores_the_twin_and_the_classical_test_on_the_same_simulations():
    from probtwin.bench.experiments import fit_state_twin, state_test
    from probtwin.simulate import v1

    row = report.run_entry("states:seeds_5-5", time_limit=60.0, max_epochs=2, n_neurons=20, n_images=300)
    assert row["role"] == "evaluation" and row["budget_seconds"] == 60.0
    sim = v1(n_neurons=20, n_images=300, seed=5, pupil_shift_fraction=0.2)
    twin = fit_state_twin(sim, 60.0, 5, max_epochs=2)  # seeded: the entry's twin
    test = state_test(twin, sim, deltas=(5.0,), seed=5)
    assert row["classical_fdr"] == pytest.approx(test["classical"]["fdr"])
    assert row["classical_power"] == pytest.approx(test["classical"]["power"])
    assert row["twin_fdr"] == pytest.approx(test["twin_delta_5.0"]["fdr"])
    assert row["twin_fdr_per_seed"] == [row["twin_fdr"]]
    assert row["twin_power"] == pytest.approx(test["twin_delta_5.0"]["power"])


def test_the_scoreboard_page_is_the_rendering_of_the_kept_results():
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    rows = [json.loads(p.read_text()) for p in sorted((docs / "scoreboard").glob("*.json"))]
    assert {r["entry"] for r in rows} <= set(report.ENTRIES) and rows
    assert (docs / "pages" / "scoreboard.md").read_text() == report.render_scoreboard(rows)
