"""The docs tell the truth about the code.

- a ```python block that starts with an import is a check the reader can run: we run it;
- any other ```python block quotes the code: every line of it must exist, verbatim up
  to surrounding whitespace, in some file under minih/ or examples/;
- every repository path written in backticks (`minih/...py`, `examples/...`, `docs/...`)
  exists, and every `minih.NAME` in backticks can be imported.
"""
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
CODE = "\n".join(p.read_text() for d in ("minih", "examples") for p in (ROOT / d).rglob("*.py"))
CODE_LINES = {line.strip() for line in CODE.splitlines()}


def blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_docs_exist():
    names = {p.name for p in DOCS}
    assert {"README.md", "01_notation.md", "02_backward.md"} <= names


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_quoted_code_exists(path):
    for block in blocks(path):
        if re.match(r"\s*(import|from) ", block):
            continue
        for line in block.splitlines():
            s = line.strip()
            if s and not s.startswith("#"):
                assert s in CODE_LINES, f"{path.name} quotes a line that is not in the code: {s!r}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_runnable_snippets_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for block in blocks(path):
        if re.match(r"\s*(import|from) ", block) and "runs/" not in block and "reproduction" not in block:
            exec(compile(block, f"<{path.name}>", "exec"), {})


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_paths_and_names_exist(path):
    text = path.read_text()
    for rel in re.findall(r"`((?:minih|examples|docs|tests)/[\w./-]+\.(?:py|md))", text):
        assert (ROOT / rel).exists(), f"{path.name} names {rel}, which does not exist"
    for name in set(re.findall(r"`minih\.([A-Za-z_][\w.]*)", text)):
        parts = name.split(".")
        obj, i = None, len(parts)
        while i > 0:                                   # longest importable module prefix
            try:
                obj = importlib.import_module("minih." + ".".join(parts[:i]))
                break
            except ImportError:
                i -= 1
        if obj is None:
            obj = importlib.import_module("minih")
        for attr in parts[i:]:
            assert hasattr(obj, attr), f"{path.name} names minih.{name}, which does not exist"
            obj = getattr(obj, attr)
