"""Classroom exercises: fill in a function, then let minih check it.

    python -m minih.exercises list            what there is
    python -m minih.exercises start 1         copy exercise 1's blank file to ./ex01_*.py
    python -m minih.exercises check 1         check ./ex01_*.py (or --file PATH)
    python -m minih.exercises check 1 --solution   check the worked solution (teachers)

The checks never compare with a hidden copy of the solution: they use finite
differences, properties every correct answer has, and inputs whose answer is known
by construction. Each failure says what was checked and gives a hint.
"""
from .registry import EXERCISES, ExerciseFailed, check_file, get_exercise  # noqa: F401
