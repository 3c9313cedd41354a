"""Models built once per test session (TensorFlow is slow to import and convert)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.toolchain.datasets import load_folder

TRAINED = ("trained", "trained_v2")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (scripts/test.sh), the tests of one trained model go to one worker, which
    trains it once; spread over workers, each would train its own copy (TensorFlow, tens of seconds)."""
    here = Path(__file__).parent
    for item in items:
        if here not in item.path.parents:
            continue
        for name in TRAINED:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(f"model-{name}"))
                break


@pytest.fixture(scope="session")
def cwru_recordings(cwru_dir):
    return load_folder(cwru_dir)


@pytest.fixture(scope="session")
def trained(cwru_recordings):
    """The default architecture trained on CWRU (fewer epochs than the CLI default, same recipe)."""
    from edgefleet.toolchain.training import TrainConfig, train_model

    return train_model(cwru_recordings, TrainConfig(epochs=60))


@pytest.fixture(scope="session")
def trained_v2(cwru_recordings):
    """The same recipe on feature definition v2 (running-speed bands, velocity, shape)."""
    from edgefleet.toolchain.training import TrainConfig, train_model

    return train_model(cwru_recordings, TrainConfig(epochs=30, front_end=2))
