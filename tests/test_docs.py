"""Every code block of the user guide runs, and the guide builds with mkdocs --strict."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCKS = [
    pytest.param(code, id=f"{page.stem}-{k}")
    for page in sorted((DOCS / "pages").glob("*.md"))
    for k, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))
]


def test_every_page_has_a_runnable_example():
    pages = {p.stem for p in (DOCS / "pages").glob("*.md")} - {"index"}
    with_code = {b.id.rsplit("-", 1)[0] for b in BLOCKS}
    assert pages <= with_code, f"pages without an example: {pages - with_code}"


@pytest.mark.parametrize("code", BLOCKS)
def test_doc_example_runs(code, tmp_path, monkeypatch, request):
    if "# needs shared/data" in code:
        request.getfixturevalue("shared_data")  # skips where the real recordings are absent
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})


def test_mkdocs_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is in the test extra")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-q",
            "-f",
            str(DOCS / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "metrics" / "index.html").is_file()
