#!/usr/bin/env bash
# Create (or reuse) the virtual environment and install vai with everything it needs, including a
# headless OpenGL library for MuJoCo if the system lacks one.
# Usage: scripts/setup.sh [VENV]   (default .venv; TORCH="torch==X" to choose the torch build)
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}
# torch first: a bare torch requirement with no torch installed pulls a multi-GB CUDA build.
torch_spec=${TORCH:-torch==2.13.0}

gl_ok() {
  "$python" - <<'PY'
import ctypes, ctypes.util, sys
for name in ("libEGL.so.1", ctypes.util.find_library("OSMesa") or "libOSMesa.so.8"):
    try:
        ctypes.CDLL(name)
        sys.exit(0)
    except OSError:
        pass
sys.exit(1)
PY
}

if ! gl_ok; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing EGL (Mesa) for headless rendering"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1-mesa-dri libosmesa6 >/dev/null
  else
    echo "setup: no OpenGL library for headless rendering; run: sudo apt-get install libegl1 libgl1-mesa-dri libosmesa6" >&2
    exit 2
  fi
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip="$venv/bin/python -m pip"
$pip install -q --upgrade pip
"$venv/bin/python" -c "import torch" 2>/dev/null || $pip install -q "$torch_spec"
$pip install -q -e ".[test]"
echo "setup: ready ($venv)"
