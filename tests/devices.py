"""Where the device-aware tests put their arrays: the ``--device`` of pytest (or the environment
variable ``EINSGRAD_TEST_DEVICE``), ``cpu`` by default.

On ``cpu`` those tests run as they always did (numpy operands stay numpy); on another torch
device (``cuda``, ``cuda:1``) their operands become torch tensors there, and the results come
back to numpy for the same independent oracles. ``benchmarks/gpu.py`` runs them so on the GPU.
"""

from __future__ import annotations

import numpy as np

ENV = "EINSGRAD_TEST_DEVICE"


def on_device(arrays, device: str) -> list:
    """numpy ``arrays`` as torch tensors on ``device`` (their values, dtypes and, but for
    negative strides, which torch lacks, their strides); unchanged on ``cpu``."""
    if device == "cpu":
        return list(arrays)
    import torch

    placed, seen = [], {}
    for a in arrays:
        if id(a) not in seen:  # one array passed as two operands stays one tensor
            x = np.asarray(a)
            seen[id(a)] = torch.from_numpy(x.copy() if min(x.strides, default=0) < 0 else x).to(device)
        placed.append(seen[id(a)])
    return placed


def to_numpy(value):
    """A torch tensor (any device) as a numpy array; anything else as it is."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value
