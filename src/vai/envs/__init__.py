"""Pixel environments: DeepMind Control (DMControl-GB modes) and DrawerWorld (table textures).

Nothing heavy happens at import: MuJoCo is imported by :func:`make_env`, after the OpenGL backend has
been chosen.
"""

from vai.envs.factory import make_env, register_envs

__all__ = ["make_env", "register_envs"]
