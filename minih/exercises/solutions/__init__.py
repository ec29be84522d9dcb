"""Worked solutions, for teachers (`python -m minih.exercises check N --solution`)."""
