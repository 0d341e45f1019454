"""vai: visual attention and invariance for reinforcement learning (Wang, Lian, Yu, CVPR 2021)."""

from vai.envs import make_env, register_envs

__version__ = "0.1.0"
__all__ = ["make_env", "register_envs", "__version__"]

# Registering ids is a dictionary insert per task (no MuJoCo import, no rendering).
register_envs()
