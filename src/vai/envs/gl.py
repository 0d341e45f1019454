"""Choose MuJoCo's headless OpenGL backend before MuJoCo is imported.

MuJoCo and dm_control read ``MUJOCO_GL`` once, when they are first imported, so the choice has to be
made before that. Order: the user's own ``MUJOCO_GL`` wins; otherwise EGL (software Mesa on a CPU
machine, the NVIDIA driver on a GPU machine); otherwise OSMesa. The probes use ``ctypes`` only, so they
cost milliseconds and never import MuJoCo.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from vai.errors import UserError

INSTALL_HINT = (
    "install an OpenGL backend: 'apt-get install libegl1 libgl1-mesa-dri' (EGL) or "
    "'apt-get install libosmesa6' (OSMesa), or set MUJOCO_GL to a backend that works here"
)

_EGL_PLATFORM_DEVICE_EXT = 0x313F
_EGL_TRUE = 1
_EGL_VERSION = 0x3054


def egl_works() -> bool:
    """True if libEGL loads and initialises a display on at least one device."""
    try:
        egl = ctypes.CDLL("libEGL.so.1")
    except OSError:
        return False
    egl.eglGetProcAddress.restype = ctypes.c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    query_address = egl.eglGetProcAddress(b"eglQueryDevicesEXT")
    display_address = egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT")
    if not query_address or not display_address:
        return False
    query_devices = ctypes.CFUNCTYPE(
        ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int)
    )(query_address)
    get_display = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p)(display_address)
    devices = (ctypes.c_void_p * 8)()
    count = ctypes.c_int(0)
    if query_devices(8, devices, ctypes.byref(count)) != _EGL_TRUE:
        return False
    egl.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    egl.eglTerminate.argtypes = [ctypes.c_void_p]
    egl.eglQueryString.argtypes = [ctypes.c_void_p, ctypes.c_int]
    egl.eglQueryString.restype = ctypes.c_char_p
    for device in devices[: count.value]:
        display = get_display(_EGL_PLATFORM_DEVICE_EXT, device, None)
        if not display:
            continue
        # A device's display is one handle per process: if MuJoCo already initialised it, it works, and
        # terminating it here would pull it from under every context MuJoCo made on it.
        if egl.eglQueryString(display, _EGL_VERSION):
            return True
        if egl.eglInitialize(display, None, None) == _EGL_TRUE:
            egl.eglTerminate(display)
            return True
    return False


def osmesa_works() -> bool:
    """True if the OSMesa library can be loaded."""
    name = ctypes.util.find_library("OSMesa") or "libOSMesa.so.8"
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def prefer_backend() -> None:
    """Choose a backend now if one works and none is set; stay silent otherwise (for ``import vai``)."""
    if not os.environ.get("MUJOCO_GL") and "mujoco" not in sys.modules:
        try:
            ensure_backend()
        except UserError:
            pass  # make_env reports it, with the fix, when rendering is actually needed


def ensure_backend() -> str:
    """Set ``MUJOCO_GL`` (and PyOpenGL's platform) if unset and return the backend in use.

    Raises :class:`UserError` naming the packages to install when no backend works.
    """
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if "mujoco" in sys.modules or "dm_control" in sys.modules:
        if chosen:
            return chosen  # MuJoCo fixed its backend at import; a broken one fails at first render
        # MuJoCo already picked its default (GLFW, which needs a display) when it was imported.
        raise UserError(
            "mujoco was imported before vai could choose a headless OpenGL backend: "
            "import vai first, or set MUJOCO_GL=egl (or osmesa) before importing mujoco"
        )
    probes = {"egl": egl_works, "osmesa": osmesa_works}
    if chosen:
        os.environ["MUJOCO_GL"] = chosen  # dm_control accepts only lower case
    if not chosen:
        chosen = next((name for name, works in probes.items() if works()), "")
        if not chosen:
            raise UserError(f"no headless OpenGL backend works on this machine: {INSTALL_HINT}")
        os.environ["MUJOCO_GL"] = chosen
    elif chosen not in (*probes, "glfw"):
        raise UserError(f"MUJOCO_GL={chosen!r} is not a MuJoCo backend: set it to egl, osmesa or glfw, or unset it")
    elif chosen in probes and not probes[chosen]():
        raise UserError(f"MUJOCO_GL={chosen} but {chosen} cannot render here: {INSTALL_HINT}")
    if chosen in probes:
        os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
    return chosen
