"""vai: visual attention and invariance for reinforcement learning (Wang, Lian, Yu, CVPR 2021)."""

from vai.envs import make_env, register_envs
from vai.envs.gl import prefer_backend

__version__ = "0.1.0"
__all__ = ["make_env", "register_envs", "__version__"]

# Two cheap steps at import, so that `import vai` followed by `import mujoco` renders headless:
# MuJoCo fixes its OpenGL backend when first imported. Neither imports MuJoCo or renders.
prefer_backend()
register_envs()
