"""Choosing MuJoCo's headless OpenGL backend.

MuJoCo (and dm_control) read ``MUJOCO_GL`` once, at import, and this process has long imported them,
so every case runs in a fresh Python with exactly the environment variables it needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
GL_VARIABLES = ("MUJOCO_GL", "PYOPENGL_PLATFORM")


def run_python(code: str, **variables: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter without MUJOCO_GL / PYOPENGL_PLATFORM unless given."""
    env = {key: value for key, value in os.environ.items() if key not in GL_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120
    )


def result_of(process: subprocess.CompletedProcess) -> dict:
    """The JSON the child printed on its last stdout line."""
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


def probes_here() -> dict:
    """What the ctypes probes say on this machine (they never import MuJoCo)."""
    return result_of(
        run_python(
            """
            import json
            from vai.envs import gl
            print(json.dumps({"egl": gl.egl_works(), "osmesa": gl.osmesa_works()}))
            """
        )
    )


RENDER_AND_REPORT = """
import json, os, sys
import numpy as np
import vai
backend = vai.envs.gl.ensure_backend()
env = vai.make_env("cartpole_balance")
obs, _ = env.reset(seed=0)
env.close()
print(json.dumps({
    "backend": backend,
    "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
    "PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM"),
    "gl_modules": sorted(m for m in sys.modules if m in ("mujoco.egl", "mujoco.osmesa", "mujoco.glfw")),
    "pixels": int(obs.astype(np.int64).sum()),
}))
"""


def test_unset_picks_a_headless_backend_that_renders():
    probes = probes_here()
    if not (probes["egl"] or probes["osmesa"]):
        pytest.skip("neither EGL nor OSMesa works on this machine")
    expected = "egl" if probes["egl"] else "osmesa"
    for unset in ({}, {"MUJOCO_GL": ""}):  # an empty value counts as unset
        report = result_of(run_python(RENDER_AND_REPORT, **unset))
        assert report["backend"] == report["MUJOCO_GL"] == report["PYOPENGL_PLATFORM"] == expected
        assert report["gl_modules"] == [f"mujoco.{expected}"], "MuJoCo used another backend"
        assert report["pixels"] > 0, "rendered an all-black frame"


def test_an_existing_mujoco_gl_is_respected():
    # glfw is never chosen by vai (it needs a display), so getting it back means it was respected;
    # no probe may run and nothing may be rewritten.
    report = result_of(
        run_python(
            """
            import json, os
            from vai.envs import gl
            def refuse():
                raise AssertionError("probed although MUJOCO_GL was set")
            gl.egl_works = gl.osmesa_works = refuse
            backend = gl.ensure_backend()
            print(json.dumps({"backend": backend, "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
                              "PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM")}))
            """,
            MUJOCO_GL="glfw",
        )
    )
    assert report == {"backend": "glfw", "MUJOCO_GL": "glfw", "PYOPENGL_PLATFORM": None}

    # A headless backend the user set is used by MuJoCo as it is, with the user's PyOpenGL platform.
    probes = probes_here()
    for backend in ("egl", "osmesa"):
        if not probes[backend]:
            process = run_python(RENDER_AND_REPORT, MUJOCO_GL=backend)
            assert process.returncode != 0
            last = process.stderr.strip().splitlines()[-1]
            assert last.startswith("vai.errors.UserError") and f"MUJOCO_GL={backend}" in last, last
            assert "apt-get install" in last
            continue
        report = result_of(run_python(RENDER_AND_REPORT, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend))
        assert report["backend"] == report["MUJOCO_GL"] == backend
        assert report["gl_modules"] == [f"mujoco.{backend}"] and report["pixels"] > 0


def test_no_working_backend_is_a_user_error_naming_the_packages():
    report = result_of(
        run_python(
            """
            import json, os, sys
            from vai.envs import gl
            from vai.errors import UserError
            os.environ.pop("MUJOCO_GL", None)  # `import vai` may already have chosen one
            os.environ.pop("PYOPENGL_PLATFORM", None)
            gl.egl_works = lambda: False
            gl.osmesa_works = lambda: False
            out = {}
            try:
                gl.ensure_backend()
            except UserError as error:
                out["ensure_backend"] = str(error)
            import vai
            try:
                vai.make_env("walker_walk")
            except UserError as error:
                out["make_env"] = str(error)
            out["MUJOCO_GL"] = os.environ.get("MUJOCO_GL")
            out["mujoco_imported"] = "mujoco" in sys.modules
            print(json.dumps(out))
            """
        )
    )
    for where in ("ensure_backend", "make_env"):
        message = report.get(where)
        assert message, f"{where} did not raise UserError: {report}"
        assert "libegl1" in message and "libosmesa6" in message and "MUJOCO_GL" in message, message
        assert "\n" not in message
    assert report["MUJOCO_GL"] is None, "a failed choice must not leave MUJOCO_GL set"
    assert report["mujoco_imported"] is False, "MuJoCo was imported before the backend was checked"


def test_import_vai_is_silent_without_gl_libraries_and_make_env_explains():
    """Hide libEGL and libOSMesa from ctypes before ``import vai``: the probes then really fail."""
    report = result_of(
        run_python(
            """
            import ctypes, json, os, sys
            real = ctypes.CDLL
            class Hidden(real):
                def __init__(self, name, *args, **kwargs):
                    if name and ("EGL" in str(name) or "OSMesa" in str(name)):
                        raise OSError(f"{name}: hidden by the test")
                    super().__init__(name, *args, **kwargs)
            ctypes.CDLL = Hidden
            import vai  # must not raise: the CLI's help and `vai data` work without GL
            from vai.errors import UserError
            out = {"MUJOCO_GL": os.environ.get("MUJOCO_GL")}
            try:
                vai.make_env("cartpole_balance")
            except UserError as error:
                out["error"] = str(error)
            out["mujoco_imported"] = "mujoco" in sys.modules
            print(json.dumps(out))
            """
        )
    )
    assert report["MUJOCO_GL"] is None
    assert "apt-get install libegl1" in report.get("error", ""), report
    assert report["mujoco_imported"] is False


def test_mujoco_imported_first_without_mujoco_gl_is_a_user_error():
    process = run_python(
        """
        import mujoco  # fixes MuJoCo's default (GLFW, needs a display) before vai can choose
        import vai
        vai.make_env("cartpole_balance")
        """
    )
    assert process.returncode != 0
    last = process.stderr.strip().splitlines()[-1]
    assert last.startswith("vai.errors.UserError") and "import vai first" in last, last


def test_invalid_mujoco_gl_is_a_user_error():
    process = run_python("import vai; vai.make_env('cartpole_balance')", MUJOCO_GL="vulkan")
    last = process.stderr.strip().splitlines()[-1]
    assert process.returncode != 0 and last.startswith("vai.errors.UserError"), last
    assert "vulkan" in last and "egl" in last


def test_mujoco_gl_in_capitals_renders_or_is_a_user_error():
    if not probes_here()["egl"]:
        pytest.skip("EGL does not work on this machine")
    process = run_python(RENDER_AND_REPORT, MUJOCO_GL="EGL")
    if process.returncode != 0:
        last = process.stderr.strip().splitlines()[-1]
        assert last.startswith("vai.errors.UserError"), last
    else:
        assert result_of(process)["gl_modules"] == ["mujoco.egl"]


def test_probing_egl_leaves_mujocos_display_working():
    """The probe runs while environments render (tests, tools): it must not terminate their display."""
    if not probes_here()["egl"]:
        pytest.skip("EGL does not work on this machine")
    code = textwrap.dedent(
        """
        import vai
        from vai.envs import gl
        first = vai.make_env("cartpole_balance", seed=0)
        first.reset(seed=0)
        assert gl.egl_works()
        second = vai.make_env("cartpole_balance", seed=1)  # a new context on the same display
        second.reset(seed=1)
        first.step(first.action_space.sample())
        print("rendered")
        """
    )
    process = run_python(code, MUJOCO_GL="egl")
    assert process.returncode == 0 and process.stdout.strip() == "rendered", process.stderr
