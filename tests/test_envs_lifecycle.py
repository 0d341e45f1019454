"""An environment's life: in worker processes (fork, spawn, forkserver), after ``close``, at exit.

The multi-process and exit cases run in a fresh Python of their own, in its own process group with a
time limit, so a hang (a GL context that did not survive a fork) fails the test instead of blocking
it, and no worker outlives it. Each task stands for its simulator: cartpole_balance for dm_control,
drawer_open for Meta-World.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from vai.envs import contexts, gl
from vai.envs.base import EnvironmentClosed

SRC = Path(__file__).resolve().parents[1] / "src"
TASKS = ("cartpole_balance", "drawer_open")
TIME_LIMIT = 120
"""Seconds a child Python may take; a few seconds suffice unless it hangs."""

NOISE = ("Exception ignored", "Traceback", "EGL_NOT_INITIALIZED")


def run_isolated(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python with MUJOCO_GL=egl; kill it and its workers after TIME_LIMIT."""
    if not gl.egl_works():
        pytest.skip("EGL does not work on this machine")
    env = dict(os.environ, MUJOCO_GL="egl", PYOPENGL_PLATFORM="egl")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so that a hung worker is killed with it
    )
    try:
        stdout, stderr = process.communicate(timeout=TIME_LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"hung for more than {TIME_LIMIT} s; stderr: {stderr[-2000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def quiet_result(process: subprocess.CompletedProcess) -> dict:
    """The JSON of the child's last stdout line, after checking it exited cleanly and said nothing else."""
    assert process.returncode == 0, process.stderr[-3000:]
    for noise in NOISE:
        assert noise not in process.stderr, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


VECTOR_ENVS = """
import json
import gymnasium
import numpy as np
import vai
from vai.rl.envthread import EnvThread

TASK = {task!r}

def make():
    return vai.make_env(TASK)

def play(envs, actions):
    observations = [envs.reset(seed=[3, 4])[0]]
    observations += [envs.step(action)[0] for action in actions]
    envs.close()
    return np.stack(observations)

# A parent that has made and used an environment holds a GL context (and an EGL display) when it
# forks, maybe on another thread (as training does on a GPU machine).
parent = EnvThread(lambda: vai.make_env(TASK, seed=0)) if {threaded!r} else vai.make_env(TASK, seed=0)
parent_obs = [parent.reset(seed=7)[0], parent.step(parent.action_space.sample())[0]]
rng = np.random.default_rng(0)
space = parent.action_space
actions = [rng.uniform(space.low, space.high, (2, *space.shape)).astype(space.dtype) for _ in range(3)]
expected = play(gymnasium.vector.SyncVectorEnv([make] * 2), actions)
equal = {{}}
for context in {contexts!r}:
    played = play(gymnasium.vector.AsyncVectorEnv([make] * 2, context=context), actions)
    equal[str(context)] = bool(np.array_equal(played, expected))
# The parent's own environment renders on after the forks, as before them.
again = parent.reset(seed=7)[0]
print(json.dumps({{
    "equal": equal,
    "seeds_differ": bool((expected[:, 0] != expected[:, 1]).any()),
    "parent_same": bool(np.array_equal(again, parent_obs[0])),
}}))
parent.close()
"""


@pytest.mark.parametrize(
    ("task", "contexts", "threaded"),
    [("cartpole_balance", (None, "spawn"), False), ("drawer_open", (None, "forkserver"), True)],
)
def test_async_vector_env_matches_sync_in_every_start_method(task, contexts, threaded):
    """``None`` is the default start method: fork on Linux (forkserver from Python 3.14 on)."""
    result = quiet_result(run_isolated(VECTOR_ENVS.format(task=task, contexts=contexts, threaded=threaded)))
    assert result["equal"] == {str(context): True for context in contexts}
    assert result["seeds_differ"], "the two seeds gave the same episode"
    assert result["parent_same"], "the parent's environment changed across the forks"


QUIET_EXIT = """
import json
import torch  # as in an SB3 script: torch's exit handlers come before any GL context
import vai

envs = [vai.make_env(task, seed=0) for task in {tasks!r}]
for env in envs:
    env.step(env.action_space.sample())
    if {close!r}:
        env.close()
        env.close()
print(json.dumps({{}}))
"""


@pytest.mark.parametrize("close", [True, False], ids=["closed", "never-closed"])
def test_a_script_ends_quietly(close):
    quiet_result(run_isolated(QUIET_EXIT.format(tasks=TASKS, close=close)))


@pytest.mark.parametrize("task", TASKS)
def test_a_closed_environment_says_so(task, data_dir):
    import vai

    env = vai.make_env(task, seed=0, data_dir=data_dir)
    env.close()
    env.close()  # harmless
    calls = {
        "reset": lambda: env.reset(seed=1),
        "step": lambda: env.step(env.action_space.sample()),
        "render": env.render,
    }
    for name, call in calls.items():
        with pytest.raises(EnvironmentClosed, match=r"closed: make a new one with vai\.make_env") as raised:
            call()
        assert isinstance(raised.value, gymnasium.error.ClosedEnvironmentError), name
        assert isinstance(raised.value, RuntimeError), name


def test_a_context_is_made_again_after_release(data_dir):
    """What a fork does to the parent's environment, in this process: release, then render on."""
    import vai

    env = vai.make_env("drawer_open", "marble", seed=0, data_dir=data_dir)
    try:
        first = env.reset(seed=5)[0]
        contexts.release_all()
        assert np.array_equal(env.reset(seed=5)[0], first), "the new context lost the marble texture"
    finally:
        env.close()
