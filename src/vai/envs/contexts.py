"""The GL contexts of this process's environments, across ``fork`` and interpreter exit.

A GL context, and the EGL display it lives on, belong to the process that made them. A forked child
inherits the driver's state but not its threads, so its first context waits forever (Mesa) or fails,
and dm_control initialises the EGL display as soon as it is imported. So before every fork each
environment's context is released and the EGL display terminated; parent and child each make a fresh
context when they next render (:class:`vai.envs.render.SceneRenderer` makes its context lazily).
The display is torn down only once no thread has a context current, so a renderer lets go of its
context after each use (:func:`let_go`), whichever thread it renders on. Contexts vai did not make
(e.g. from ``physics.render()``) do not survive a fork.

At exit the contexts are released before the exit handlers of MuJoCo and dm_control terminate the EGL
display; released after it, they would print "Exception ignored ... EGL_NOT_INITIALIZED".

The renderers that may hold a context are the one piece of process-wide state vai keeps: a fork or
the exit has to reach every one of them.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import weakref
from typing import Protocol


class Releasable(Protocol):
    def release(self) -> None:
        """Free the GL context now; the next render makes a new one."""


_renderers: weakref.WeakSet[Releasable] = weakref.WeakSet()

_EGL_MODULES = ("mujoco.egl", "dm_control._render.pyopengl.egl_renderer")
"""The modules that open an EGL display and keep it in ``EGL_DISPLAY`` (the same display for both)."""


def track(renderer: Releasable) -> None:
    """Release ``renderer``'s context before every fork and at exit, for as long as it lives."""
    _install_fork_hook()
    _renderers.add(renderer)


def context_made() -> None:
    """Keep the exit handler ahead of the display's teardown; call after making a context."""
    # atexit runs handlers last in, first out, and MuJoCo registers its eglTerminate when it first
    # opens the display (dm_control when it is imported): registering again puts ours after theirs.
    atexit.unregister(release_all)
    atexit.register(release_all)


def let_go() -> None:
    """Leave no EGL context current on this thread (after rendering), so that a fork can free it."""
    egl = sys.modules.get("mujoco.egl")  # imported by MuJoCo only when it renders through EGL
    if egl is not None and egl.EGL_DISPLAY:
        egl.EGL.eglMakeCurrent(egl.EGL_DISPLAY, egl.EGL.EGL_NO_SURFACE, egl.EGL.EGL_NO_SURFACE, egl.EGL.EGL_NO_CONTEXT)


def release_all() -> None:
    """Free the context of every live renderer (each makes a new one when it next renders)."""
    for renderer in list(_renderers):
        renderer.release()


@functools.cache
def _install_fork_hook() -> None:
    os.register_at_fork(before=_before_fork)


def _before_fork() -> None:
    release_all()
    _terminate_egl_display()


def _terminate_egl_display() -> None:
    """Terminate the EGL display MuJoCo and dm_control opened, so that a child can open its own."""
    terminated = set()
    for name in _EGL_MODULES:
        module = sys.modules.get(name)
        display = getattr(module, "EGL_DISPLAY", None)
        if not display:  # never opened, or EGL_NO_DISPLAY
            continue
        if display.address not in terminated:
            module.EGL.eglTerminate(display)
            terminated.add(display.address)
        if name == "mujoco.egl":
            module.EGL_DISPLAY = None  # MuJoCo opens (initialises) it again for its next context
