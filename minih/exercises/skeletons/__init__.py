"""Blank exercise files: `python -m minih.exercises start N` copies one to your folder."""
