"""Shared test configuration: hypothesis profiles and the test helpers' import path.

The ``ci`` profile is loaded by default; choose another with the environment variable
``EINSGRAD_HYPOTHESIS_PROFILE`` (``dev`` for a quick run, ``thorough`` for a long one).
"""

from __future__ import annotations

import os
import sys

from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))  # tests import strategies and oracles

settings.register_profile("ci", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=10, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("EINSGRAD_HYPOTHESIS_PROFILE", "ci"))
