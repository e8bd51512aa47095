"""Every code block of the user guide runs, and the guide builds with mkdocs --strict, with an API
reference that documents every public name."""

import importlib
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


def test_mkdocs_builds_strict_with_every_public_name(tmp_path):
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
    html = "".join(p.read_text() for p in (tmp_path / "site" / "api").rglob("index.html"))
    anchors = set(re.findall(r'id="(probtwin[\w.]*)"', html))
    directives = re.findall(r"^::: (\S+)", "".join(p.read_text() for p in (DOCS / "pages" / "api").glob("*.md")), re.M)
    documented = 0
    for target in directives:
        module = importlib.import_module(target) if _is_module(target) else None
        names = getattr(module, "__all__", []) if module is not None else [target.rsplit(".", 1)[1]]
        prefix = target if module is not None else target.rsplit(".", 1)[0]
        missing = [n for n in names if not any(a.startswith(prefix) and a.endswith(f".{n}") for a in anchors)]
        assert not missing, f"{target}: public names without a reference entry: {missing}"
        documented += len(names)
    # every public subpackage has its page, and every top-level name is documented somewhere
    import probtwin

    modules = {"probtwin." + n for n in probtwin.__all__ if _is_module("probtwin." + n)}
    assert modules <= set(directives), modules - set(directives)
    leaves = {n for n in probtwin.__all__ if not _is_module("probtwin." + n)}
    assert all(any(a.endswith("." + n) for a in anchors) for n in leaves)
    assert documented > 150


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def test_every_table_row_has_its_header_s_columns():
    """A table is a header, a separator and rows of the header's cells: rows pasted under another
    table's header, or a table broken by a stray line, are refused."""
    pages = sorted((DOCS / "pages").rglob("*.md")) + [DOCS.parent / "README.md"]
    wrong = []
    for page in pages:
        header, row = None, 0
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if not line.startswith("|"):
                header = None
                continue
            cells = len(re.findall(r"(?<!\\)\|", line.strip())) - 1
            row = 0 if header is None else row + 1
            header = cells if header is None else header
            if cells != header:
                wrong.append(f"{page.name}:{number} has {cells} cells, its header {header}")
            if row == 1 and not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()):
                wrong.append(f"{page.name}:{number}: a table's second line is its separator (|---|)")
    assert not wrong, "\n".join(wrong)
