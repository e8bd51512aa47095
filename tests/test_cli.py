import shutil
import subprocess

import pytest

from probtwin.cli import main


def test_demo_prints_the_summary_and_calibrated_truth(capsys):
    assert main(["demo", "--neurons", "40", "--images", "200", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "Recording('simulated_v1_seed0': 400 trials x 40 neurons" in out
    line = next(x for x in out.splitlines() if "coverage_90" in x)
    assert abs(float(line.split()[-1]) - 0.9) < 0.05
    assert "FEVE" in out and "bits per neuron per trial" in out


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
