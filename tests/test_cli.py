import shutil
import subprocess

import pytest

from probtwin.cli import main


def test_demo_fits_a_twin_and_writes_a_figure(capsys, tmp_path):
    figure = tmp_path / "demo.png"
    args = ["demo", "--neurons", "20", "--images", "200", "--epochs", "2", "--quiet", "--figure", str(figure)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Recording('simulated_v1_seed0': 200 trials x 20 neurons" in out
    for key in (
        "single_trial_correlation",
        "log_likelihood_bits",
        "coverage_90",
        "median error",
        "90% interval",
        "demo done in",
    ):
        assert key in out
    assert figure.is_file() and figure.stat().st_size > 10_000


def test_bench_svi_step_and_predict_memory(capsys):
    assert main(["bench", "svi-step", "--neurons", "20", "--images", "100", "--repeat", "2", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "SVI" in out and "ratio" in out
    assert main(["bench", "predict-memory", "--neurons", "20", "--images", "30"]) == 0
    assert "peak resident memory" in capsys.readouterr().out


def test_bench_simulate_prints_a_time(capsys):
    assert main(["bench", "simulate", "--neurons", "20", "--images", "50", "--repeat", "1"]) == 0
    assert "simulate.v1 20 neurons x 50 images" in capsys.readouterr().out


def test_datasets_lists_the_real_recordings(shared_data, capsys, monkeypatch):
    monkeypatch.setenv("PROBTWIN_DATA", str(shared_data))
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "cowley_v4_201025" in out and "responses (1200, 89)" in out and "960 / 120 / 120" in out
    assert "dad_m1_chewie_0" in out and "nategh_perisaccadic_181024" in out


def test_console_script_is_installed():
    exe = shutil.which("probtwin")
    if exe is None:
        pytest.skip("probtwin is not installed as a package here (pip install -e . installs the script)")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "demo" in result.stdout
    with pytest.raises(SystemExit):
        main(["nonsense"])


def test_bench_noise_scale_and_simulation(capsys):
    assert main(["bench", "noise-scale", "--neurons", "20", "--repeat", "1", "--batch-size", "8", "--rank", "2"]) == 0
    out = capsys.readouterr().out
    assert "flow_200" in out and "noise_only_growth" in out
    args = ["bench", "noise-simulation", "--neurons", "10", "--images", "12", "--epochs", "1", "--rank", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "flow_gap_to_truth_bits" in out and "noise_model_gap_bits" in out
