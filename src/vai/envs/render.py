"""Offscreen rendering of a MuJoCo scene: colour image and segmentation from one scene update.

Both simulators (dm_control and Meta-World) hand us a raw ``MjModel`` / ``MjData`` pair; one
:class:`SceneRenderer` per environment draws it. The segmentation pass (object id and type per pixel,
no lighting, no reflections) is what makes compositing exact and the ground-truth mask possible.
Import this module only after :func:`vai.envs.gl.ensure_backend`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import mujoco
import numpy as np

from vai.envs import contexts

_GEOM = int(mujoco.mjtObj.mjOBJ_GEOM)
_SITE = int(mujoco.mjtObj.mjOBJ_SITE)
_TENDON = int(mujoco.mjtObj.mjOBJ_TENDON)


def free_camera(azimuth: float, elevation: float, distance: float, lookat: Iterable[float]) -> mujoco.MjvCamera:
    """A free camera looking at ``lookat`` from the given spherical position."""
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.azimuth = azimuth
    camera.elevation = elevation
    camera.distance = distance
    camera.lookat[:] = np.asarray(tuple(lookat), dtype=np.float64)
    return camera


class SceneRenderer:
    """Renders one model from one camera into ``size`` x ``size`` uint8 images.

    The GL context is made at the first render, in the process that renders, and made again after
    :meth:`release` (which :mod:`vai.envs.contexts` calls before a fork and at exit); it uploads the
    model's textures as they are then, so edits to ``model.tex_data`` carry over.
    """

    def __init__(self, model: mujoco.MjModel, size: int, camera: int | Mapping[str, object]):
        self._model = model
        self._size = size
        self._camera = camera if isinstance(camera, int) else free_camera(**camera)
        self._renderer: mujoco.Renderer | None = None
        self._closed = False
        contexts.track(self)

    def _context(self) -> mujoco.Renderer:
        if self._closed:
            raise RuntimeError("this renderer is closed")
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self._model, self._size, self._size)
            contexts.context_made()
        return self._renderer

    def render(self, data: mujoco.MjData, segmentation: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Colour image (H, W, 3) uint8 and, if asked, segmentation (H, W, 2) int32: id and type.

        The scene is updated once and drawn twice, so both images show the same instant.
        """
        renderer = self._context()
        try:
            renderer.update_scene(data, camera=self._camera)
            rgb = renderer.render()
            if not segmentation:
                return rgb, None
            renderer.enable_segmentation_rendering()
            try:
                segments = renderer.render()
            finally:
                renderer.disable_segmentation_rendering()
            return rgb, segments
        finally:
            contexts.let_go()

    def upload_texture(self, texture_id: int) -> None:
        """Push ``model.tex_data`` of one texture to the GL context (after editing it in place)."""
        if self._renderer is None:
            return  # the context, once made, starts from the model's textures as they are then
        # Several environments (GL contexts) may live in one process: upload into our own.
        self._renderer._gl_context.make_current()
        try:
            mujoco.mjr_uploadTexture(self._model, self._renderer._mjr_context, texture_id)
        finally:
            contexts.let_go()

    def release(self) -> None:
        """Free the GL context now; the next render makes a new one."""
        renderer, self._renderer = self._renderer, None
        if renderer is not None:
            renderer.close()

    def close(self) -> None:
        """Free the GL context for good (closing twice is harmless)."""
        self._closed = True
        self.release()


class ForegroundIndex:
    """Turns a segmentation image into a foreground mask with one table look-up per pixel.

    Foreground objects are given per type (geoms, sites, tendons); everything else, including pixels
    where nothing was drawn (the sky), is background.
    """

    def __init__(self, geoms: np.ndarray, sites: np.ndarray, tendons: np.ndarray):
        table = np.concatenate([geoms, sites, tendons, [False]]).astype(bool)
        none = len(table) - 1
        # Index by object type + 1 (type -1 means nothing drawn): where that type's ids start in
        # `table`, and whether the id counts (0 for types we do not track, which map to `none`).
        self._start = np.full(64, none, dtype=np.int64)
        self._use_id = np.zeros(64, dtype=np.int64)
        for object_type, start in ((_GEOM, 0), (_SITE, len(geoms)), (_TENDON, len(geoms) + len(sites))):
            self._start[object_type + 1] = start
            self._use_id[object_type + 1] = 1
        self._table = table

    def __call__(self, segments: np.ndarray) -> np.ndarray:
        """Boolean (H, W) foreground mask of a segmentation image (H, W, 2)."""
        ids, types = segments[..., 0], segments[..., 1] + 1
        return self._table[self._start[types] + ids * self._use_id[types]]

    @classmethod
    def from_bodies(
        cls,
        model: mujoco.MjModel,
        bodies: np.ndarray,
        extra_geoms: Iterable[str] = (),
        extra_sites: Iterable[str] = (),
        tendons: bool = True,
    ) -> ForegroundIndex:
        """Foreground = geoms and sites on the given bodies (bool per body), plus named extras."""
        geoms = bodies[model.geom_bodyid].copy()
        sites = bodies[model.site_bodyid].copy()
        for name in extra_geoms:
            geoms[_object_id(model, mujoco.mjtObj.mjOBJ_GEOM, name)] = True
        for name in extra_sites:
            sites[_object_id(model, mujoco.mjtObj.mjOBJ_SITE, name)] = True
        return cls(geoms, sites, np.full(model.ntendon, tendons, dtype=bool))


def moving_bodies(model: mujoco.MjModel) -> np.ndarray:
    """Bool per body: True for bodies that can move (not welded to the world body)."""
    return model.body_weldid != 0


def subtree_bodies(model: mujoco.MjModel, roots: Iterable[str]) -> np.ndarray:
    """Bool per body: True for the named bodies and all their descendants."""
    selected = np.zeros(model.nbody, dtype=bool)
    for name in roots:
        selected[_object_id(model, mujoco.mjtObj.mjOBJ_BODY, name)] = True
    # Parents always come before children in MuJoCo's body order, so one pass propagates.
    for body in range(1, model.nbody):
        selected[body] |= selected[model.body_parentid[body]]
    return selected


def _object_id(model: mujoco.MjModel, object_type: mujoco.mjtObj, name: str) -> int:
    object_id = mujoco.mj_name2id(model, object_type, name)
    if object_id < 0:
        raise ValueError(f"model has no {object_type.name[6:].lower()} named {name!r}")
    return object_id
