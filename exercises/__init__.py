"""Checkers for the exercises at the end of each notebook: `check_exercise("01.3", your_function)`."""

from exercises.checks import EXERCISES, Result, check_exercise, run_check

__all__ = ["EXERCISES", "Result", "check_exercise", "run_check"]
