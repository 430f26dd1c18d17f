"""Shared test configuration: hypothesis profiles, the device option and the test helpers'
import path.

The ``ci`` profile is loaded by default; choose another with the environment variable
``EINSGRAD_HYPOTHESIS_PROFILE`` (``dev`` for a quick run, ``thorough`` for a long one).
``--device cuda`` (or ``EINSGRAD_TEST_DEVICE=cuda``) makes the tests that take the ``device``
fixture put their tensors there (see ``tests/devices.py``); the default is ``cpu``.
"""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))  # tests import strategies and oracles

from devices import ENV  # noqa: E402  (after the path)

settings.register_profile("ci", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=10, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("EINSGRAD_HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser):
    parser.addoption("--device", default=os.environ.get(ENV, "cpu"),
                     help="torch device of the device-aware tests: cpu (default), cuda, cuda:1")


def pytest_configure(config):
    """A device other than cpu must exist here: a run asked for the GPU never passes on CPU."""
    name = config.getoption("--device")
    if name == "cpu":
        return
    try:
        import torch

        device = torch.device(name)
    except (ImportError, RuntimeError) as error:
        raise pytest.UsageError(f"--device {name}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device {name}: torch sees no CUDA device here")


@pytest.fixture(scope="session")
def device(pytestconfig) -> str:
    """The torch device of the device-aware tests (``cpu`` unless ``--device`` says)."""
    return pytestconfig.getoption("--device")
