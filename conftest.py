"""Repository-wide pytest set-up.

A bare `pytest` runs tests/ and every notebook (see pytest.ini). This file makes that run
quick and repeatable:
- notebooks run in the *smoke* profile (tiny models, few steps) unless GPT2_PROFILE is already set,
  so `GPT2_PROFILE=full pytest 01_architecture.ipynb` still checks the full profile;
- the CPU thread count is pinned (2, the size of our CI machines) unless you set it yourself.

This has to happen when pytest imports this file, before any test imports torch: torch reads the
thread variables once, and nbval starts each notebook's kernel as a child process that inherits
this environment.
"""

import os

os.environ.setdefault("GPT2_PROFILE", "smoke")
for thread_variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(thread_variable, "2")
