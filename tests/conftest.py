"""Suite-wide settings.

`make test` runs the suite on two pytest-xdist workers; each computes on one thread, since two
workers of several threads each would oversubscribe the cores and slow both down.
"""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
