"""Shared oracles for the tests (they live in minih.testing, also used by the exercises)."""
from minih.testing import assert_close, numerical_grad  # noqa: F401
