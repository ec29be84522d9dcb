"""The list of exercises and the machinery to load and check a student's file."""
from __future__ import annotations

import importlib.machinery
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import checks

HERE = Path(__file__).parent


class ExerciseFailed(Exception):
    """A check failed; the message says which, with values and a hint."""


@dataclass(frozen=True)
class Exercise:
    number: int
    slug: str                    # file name without the exNN_ prefix
    title: str
    function: str                # the function the student fills in
    check: Callable              # check(student_function) -> list of passed-check names; raises

    @property
    def filename(self) -> str:
        return f"ex{self.number:02d}_{self.slug}.py"

    def skeleton(self) -> Path:
        return HERE / "skeletons" / self.filename

    def solution(self) -> Path:
        return HERE / "solutions" / self.filename


EXERCISES = [
    Exercise(1, "layernorm_backward", "LayerNorm backward", "layernorm_backward",
             checks.check_layernorm_backward),
    Exercise(2, "attention_backward", "Causal softmax attention backward", "attention_backward",
             checks.check_attention_backward),
    Exercise(3, "cross_entropy_backward", "Next-token cross-entropy gradient",
             "cross_entropy_backward", checks.check_cross_entropy_backward),
    Exercise(4, "prefix_matching", "Prefix-matching score of a head", "prefix_matching_score",
             checks.check_prefix_matching),
    Exercise(5, "eigenvalue_copying", "Eigenvalue copying score of an OV circuit",
             "eigenvalue_copying_score", checks.check_eigenvalue_copying),
    Exercise(6, "zero_ablation", "Zero ablation of one head", "zero_ablated_logits",
             checks.check_zero_ablation),
    Exercise(7, "gelu_backward", "GELU backward", "gelu_backward", checks.check_gelu_backward),
    Exercise(8, "mlp_backward", "MLP backward", "mlp_backward", checks.check_mlp_backward),
]


def get_exercise(number: int) -> Exercise:
    for ex in EXERCISES:
        if ex.number == number:
            return ex
    raise ValueError(f"no exercise {number}; exercises are "
                     f"{[ex.number for ex in EXERCISES]} (python -m minih.exercises list)")


def load_function(path: Path, name: str):
    """Import the file at `path` (Python source, whatever its name ends with) and return
    its function `name`."""
    if path.is_dir():
        raise ExerciseFailed(f"{path} is a folder; pass the file with your solution, "
                             f"e.g. --file {path / 'exNN_name.py'}")
    if not path.is_file():
        raise ExerciseFailed(f"{path} does not exist; create it with "
                             f"`python -m minih.exercises start N` or pass --file PATH")
    # an explicit source loader: spec_from_file_location knows no loader for a name
    # without .py (e.g. a file saved as "solution.txt")
    loader = importlib.machinery.SourceFileLoader(f"_minih_exercise_{path.stem}", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SystemExit as e:   # sys.exit() or exit() at the top of the file
        raise ExerciseFailed(f"importing {path} called sys.exit({e.code!r}); "
                             f"remove that call, the file must only define functions") from None
    except Exception as e:  # a syntax error in the student's file is a result, not a crash
        raise ExerciseFailed(f"could not import {path}: {type(e).__name__}: {e}") from e
    if not hasattr(module, name):
        raise ExerciseFailed(f"{path} has no function {name!r}")
    fn = getattr(module, name)
    if not callable(fn):
        raise ExerciseFailed(f"{path}: {name} must be a function, got {type(fn).__name__}")
    return fn


def check_file(number: int, path: Path) -> list[str]:
    """Run exercise `number`'s checks on the file at `path`.

    Returns the names of the passed checks; raises ExerciseFailed on the first failure.
    """
    ex = get_exercise(number)
    fn = load_function(Path(path), ex.function)
    try:
        return ex.check(fn)
    except NotImplementedError as e:
        raise ExerciseFailed(f"{ex.function} is not filled in yet ({e})") from e
    except checks.CheckFailed as e:
        raise ExerciseFailed(str(e)) from e
    except SystemExit as e:   # exit() would end the checker and look like a pass
        raise ExerciseFailed(f"{ex.function} called sys.exit({e.code!r}); a function must "
                             f"return its result, not end the program") from None
    except Exception as e:  # the student's code crashed: show where, kindly
        raise ExerciseFailed(f"{ex.function} raised {type(e).__name__}: {e}") from e
