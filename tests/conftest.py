"""Shared fixtures: the benchmark data folder, one video cache per session, envs that get closed.

``import vai`` comes first on purpose: it chooses MuJoCo's headless OpenGL backend (``MUJOCO_GL``)
before any test module can import MuJoCo, which fixes its backend once, at import. Test modules
import ``mujoco``, ``dm_control`` and ``metaworld`` inside functions for the same reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import vai  # noqa: F401  (chooses the GL backend before anything imports MuJoCo)

DATA_ENV_VAR = "VAI_TEST_DATA"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker gets its share of the cores as OpenMP threads (torch's and those of
    the ``vai`` processes the tests start), unless ``OMP_NUM_THREADS`` is set already. Two workers that
    each run torch on every core spend about half their CPU time spinning against each other.
    Runs before the test modules are imported, so torch reads the setting when it loads."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(workers)))


def shared_data_dir() -> Path:
    """``$VAI_TEST_DATA``, else ``$VAI_DATA_DIR``, else the data beside the checkout (``../shared/data``)."""
    for variable in (DATA_ENV_VAR, "VAI_DATA_DIR"):
        if os.environ.get(variable):
            return Path(os.environ[variable])
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding ``colors/``, ``video_easy/``, ``video_hard/`` and ``drawerworld/``."""
    path = shared_data_dir()
    wanted = ("colors", "video_easy", "video_hard", "drawerworld")
    absent = [name for name in wanted if not (path / name).is_dir()]
    if absent and os.environ.get("CI"):
        pytest.fail(f"CI needs the benchmark data: {path} lacks {', '.join(absent)}")
    if absent:
        pytest.skip(
            f"benchmark data not found at {path} (missing {', '.join(absent)}); "
            f"set {DATA_ENV_VAR} to the shared data folder"
        )
    return path


@pytest.fixture(scope="session")
def video_cache():
    """One :class:`vai.data.video.VideoCache` for the session, so each video is decoded once."""
    from vai.data.video import VideoCache

    return VideoCache()


@pytest.fixture
def env_factory() -> Iterator[Callable[..., object]]:
    """``vai.make_env`` that closes every environment it made when the test ends (GL contexts)."""
    made = []

    def make(*args, **kwargs):
        env = vai.make_env(*args, **kwargs)
        made.append(env)
        return env

    yield make
    for env in reversed(made):
        env.close()


def damaged_copy(path: Path, out: Path, start: int, stop: int) -> Path:
    """``path`` copied to ``out`` with bytes ``start:stop`` inverted: same size, same header, bad data."""
    data = bytearray(path.read_bytes())
    data[start:stop] = bytes(byte ^ 0xFF for byte in data[start:stop])
    out.write_bytes(bytes(data))
    return out
