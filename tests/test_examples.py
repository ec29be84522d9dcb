"""Every numbered example runs to completion in its --tiny mode, and keeps its promises:
a docstring saying what it shows, how long it takes and what it prints, under ~100 lines."""
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("[0-9][0-9]_*.py"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_tiny(path, tmp_path):
    text = path.read_text()
    assert len(text.splitlines()) <= 110, f"{path.name} is longer than ~100 lines"
    doc = text.split('"""')[1]
    for word in ("Shows:", "Takes:", "Prints:"):
        assert word in doc, f"{path.name}'s docstring lacks {word!r}"
    result = subprocess.run([sys.executable, str(path), "--tiny"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{path.name} printed nothing"
