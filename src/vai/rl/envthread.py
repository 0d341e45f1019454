"""An environment on a thread of its own, so that its step runs while the agent updates.

In the training loop the action of step t is chosen before the update of step t, and the update
samples only transitions already stored, so the environment's step and the agent's update do not
depend on each other. MuJoCo's physics and rendering release Python's lock, so a step on another
thread overlaps the update's Python and kernel launches; the new frame's stored form (for ``vai``
the frozen adapter's pass) is made there too, right after the step. That pays when a core is free
for the environment while torch computes: training uses the thread where :func:`overlap_pays`, on
a GPU machine (the update is mostly the host's kernel launches) and where torch's threads leave a
CPU core free, as they do by default (:mod:`vai.threads`: training leaves one core to this thread).
With torch on every core of a small CPU the thread takes cores from the update
(``benchmarks/cpu_speed.py`` measures both ways: on 2 cores, one torch thread beside the environment's
thread runs the loop faster than two torch threads inline).

An OpenGL context belongs to the thread that made it current (EGL refuses one that is current on
another thread), so the environment is built, reset, stepped and closed on the worker thread only.

Example::

    env = EnvThread(lambda: make_env("walker_walk", "train"))
    pending = env.step_async(action)   # the worker steps the environment ...
    agent.update(batch, number)        # ... while the agent updates
    obs, reward, terminated, truncated, info = pending.result()
    env.close()
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class EnvThread:
    """A Gymnasium environment made by ``make()`` and used only on one worker thread."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vai-env")
        try:
            self.env = self._pool.submit(make).result()
        except BaseException:
            self._pool.shutdown()
            raise
        self.action_space = self.env.action_space
        self.observation_space = self.env.observation_space

    @property
    def unwrapped(self) -> Any:
        """The inner environment, for reading its attributes (calls that render belong on the worker)."""
        return self.env.unwrapped

    def _submit(self, function: Callable, *args: Any, **kwargs: Any) -> Future:
        if self._pool is None:
            raise RuntimeError("the environment is closed")
        return self._pool.submit(function, *args, **kwargs)

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        return self._submit(self.env.reset, **kwargs).result()

    def step_async(self, action: Any, then: Callable[[Any], Any] | None = None) -> Future:
        """Start ``env.step(action)`` on the worker; the future's result is the step's 5-tuple, or with
        ``then`` the pair (5-tuple, ``then(observation)``), ``then`` also running on the worker."""
        if then is None:
            return self._submit(self.env.step, action)
        return self._submit(_step_then, self.env, action, then)

    def step(self, action: Any) -> tuple:
        return self.step_async(action).result()

    def close(self) -> None:
        if self._pool is None:
            return
        try:
            self._pool.submit(self.env.close).result()
        finally:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> EnvThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def overlap_pays(device: Any) -> bool:
    """Whether stepping on a thread of its own can speed up training on ``device``: on a GPU (the host
    mostly launches kernels), or where the cores this process may use include one that torch's threads
    leave free."""
    import torch

    from vai.threads import usable_cores

    return torch.device(device).type == "cuda" or usable_cores() > torch.get_num_threads()


def start_step(env: Any, action: Any, then: Callable[[Any], Any] | None = None) -> Callable[[], tuple]:
    """Begin ``env.step(action)``; call the result for the step's 5-tuple, or with ``then`` for the pair
    (5-tuple, ``then(observation)``). An :class:`EnvThread` steps (and runs ``then``) on its worker
    from now on; any other environment steps when the result is called, on the caller's thread, so a
    plain environment sees the loop's calls in the order it always did."""
    if isinstance(env, EnvThread):
        return env.step_async(action, then).result
    if then is None:
        return lambda: env.step(action)
    return lambda: _step_then(env, action, then)


def _step_then(env: Any, action: Any, then: Callable[[Any], Any]) -> tuple[tuple, Any]:
    result = env.step(action)
    return result, then(result[0])
