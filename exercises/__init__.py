"""Checkers for the exercises at the end of each notebook: `check_exercise("01.3", your_function)`.

exercises/checks.py runs a checker and reports; the checkers are in one module per notebook, imported
here so that each registers itself (in the notebooks' order, which EXERCISES keeps).
"""

from exercises.checks import EXERCISES, Result, check_exercise, run_check
from exercises import architecture, pretraining, weights, classify, instruct  # noqa: F401 (they register)

__all__ = ["EXERCISES", "Result", "check_exercise", "run_check"]
