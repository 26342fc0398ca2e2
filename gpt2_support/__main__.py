"""`python -m gpt2_support`: the command line, the same as the console script `gpt2` (gpt2_support/cli.py).
Under torchrun: `torchrun --standalone --nproc_per_node 8 -m gpt2_support pretrain ...`."""

import sys

from gpt2_support.cli import main

if __name__ == "__main__":
    sys.exit(main())
