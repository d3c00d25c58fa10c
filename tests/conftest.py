import os
import warnings

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None, max_examples=50)
settings.register_profile(
    "ci", deadline=None, derandomize=True, max_examples=50, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Generated-source cache in a per-session temporary directory, never the user's."""
    monkeypatch.setenv("LSTM_VERIFY_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def pytest_configure(config):
    warnings.filterwarnings("error")
