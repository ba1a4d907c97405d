"""Solid primitives of the synthetic world: convex polyhedra (boxes, prisms) and ellipsoids.

A primitive carries its class id (``perception.data.classes``), a material (how the renderer
colours it), an albedo colour and a local frame for procedural textures. Many primitives are
packed into a :class:`PrimTable` (struct of arrays) so culling, screen rectangles and deferred
shading work on all of them at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from perception.data.classes import class_names
from perception.data.synthetic import kernels

__all__ = ["Cls", "Material", "Kind", "Prim", "PrimTable", "box", "prism", "ellipsoid", "frame",
           "frames", "boxes", "ellipsoids", "MAX_PLANES"]

MAX_PLANES = 6  # boxes and the 4-sided prisms used here; fewer planes = less work per ray
_NAMES = class_names()


class Cls(IntEnum):
    """Class ids of :mod:`perception.data.classes`, looked up by name (never renumbered)."""

    ROAD = _NAMES.index("road")
    SIDEWALK = _NAMES.index("sidewalk")
    BUILDING = _NAMES.index("building")
    POLE = _NAMES.index("pole")
    TRAFFIC_SIGN = _NAMES.index("traffic_sign")
    VEGETATION = _NAMES.index("vegetation")
    TERRAIN = _NAMES.index("terrain")
    SKY = _NAMES.index("sky")
    VEHICLE = _NAMES.index("vehicle")


class Material(IntEnum):
    PLAIN = 0  # flat albedo with mild noise
    BODY = 1  # car paint; params: length, width, body height, facing (lights)
    GLASS = 2  # dark reflective windows
    TIRE = 3
    FACADE = 4  # params: floor height, window pitch, window fraction, lit-window probability
    FOLIAGE = 5
    SIGN = 6  # params: shape id, rim colour index
    LAMP = 7  # emissive at night
    SIGNAL = 8  # traffic light housing; params: which lamp is lit


class Kind(IntEnum):
    CONVEX = 0
    ELLIPSOID = 1


@dataclass
class Prim:
    kind: Kind
    cls: int
    material: Material
    color: np.ndarray  # [3] linear albedo
    planes: np.ndarray  # [K, 4] world half-spaces n . x <= h (convex); empty for ellipsoids
    verts: np.ndarray  # [8, 3] world points whose hull contains the shape
    frame: np.ndarray  # [4, 4] local -> world
    params: np.ndarray  # [4] material parameters (ellipsoid: radii in params[:3])
    s: float  # road arc length of the primitive (for culling)


def frame(origin: np.ndarray, yaw: float) -> np.ndarray:
    """[4, 4] local -> world for a frame at ``origin`` rotated by ``yaw`` about z."""
    c, s = np.cos(yaw), np.sin(yaw)
    x, y, z = np.asarray(origin, float)
    return np.array([[c, -s, 0.0, x], [s, c, 0.0, y], [0.0, 0.0, 1.0, z], [0.0, 0.0, 0.0, 1.0]])


# Box corners in the order (x, y, z) over (lo, hi) x (lo, hi) x (lo, hi), z fastest, as indices
# into the concatenated (lo, hi).
_CORNERS = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * 3 + np.arange(3)
_BOX_NORMALS = np.concatenate([np.eye(3), -np.eye(3)])  # (-eye keeps its -0.0 entries)
_NO_PLANES = np.zeros((0, 4))


def _place(planes_l: np.ndarray, verts_l: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local half-spaces and points to the world through ``T``: ``n_w = n @ R.T``,
    ``h_w = h + n_w @ o``, ``v @ R.T + o`` (compiled, see ``kernels.place_convex``)."""
    return kernels.place_convex(planes_l, verts_l, T)


def box(T: np.ndarray, lo: tuple[float, float, float], hi: tuple[float, float, float], cls: int,
        material: Material, color, params=(0.0, 0.0, 0.0, 0.0), s: float = 0.0) -> Prim:
    """Axis-aligned box ``lo <= x <= hi`` in the local frame ``T``."""
    lo_a, hi_a = np.asarray(lo, float), np.asarray(hi, float)
    planes = np.empty((6, 4))
    planes[:, :3] = _BOX_NORMALS
    planes[:3, 3] = hi_a
    planes[3:, 3] = -lo_a
    corners = np.concatenate((lo_a, hi_a))[_CORNERS]
    pw, vw = _place(planes, corners, T)
    return Prim(Kind.CONVEX, int(cls), material, np.asarray(color, float), pw, vw, T,
                np.asarray(params, float), float(s))


def prism(T: np.ndarray, profile_xz: np.ndarray, half_width: float, cls: int, material: Material,
          color, params=(0.0, 0.0, 0.0, 0.0), s: float = 0.0) -> Prim:
    """Convex polygon ``profile_xz`` ([M, 2] points in the local x-z plane, either winding)
    extruded over ``|y| <= half_width`` (car cabins, pitched roofs)."""
    P = np.asarray(profile_xz, float)
    centre = P.mean(axis=0)
    planes = []
    for i in range(len(P)):
        a, b = P[i], P[(i + 1) % len(P)]
        edge = b - a
        n = np.array([edge[1], -edge[0]])
        n /= np.linalg.norm(n)
        if n @ (centre - a) > 0:  # make the normal point outwards whatever the winding
            n = -n
        planes.append([n[0], 0.0, n[1], n @ a])
    planes += [[0.0, 1.0, 0.0, half_width], [0.0, -1.0, 0.0, half_width]]
    planes_a = np.array(planes)
    if len(planes_a) > MAX_PLANES:
        raise ValueError(f"prism: at most {MAX_PLANES - 2} profile vertices, got {len(P)}")
    verts = np.array([[x, y, z] for (x, z) in P for y in (-half_width, half_width)])
    if len(verts) < 8:
        verts = np.concatenate([verts, verts[: 8 - len(verts)]])
    else:
        lo, hi = verts.min(0), verts.max(0)
        verts = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    pw, vw = _place(planes_a, verts, T)
    return Prim(Kind.CONVEX, int(cls), material, np.asarray(color, float), pw, vw, T,
                np.asarray(params, float), float(s))


def ellipsoid(centre: np.ndarray, radii: tuple[float, float, float], cls: int, material: Material,
              color, yaw: float = 0.0, s: float = 0.0) -> Prim:
    T = frame(np.asarray(centre, float), yaw)
    r = np.asarray(radii, float)
    corners = np.concatenate((-r, r))[_CORNERS]
    return Prim(Kind.ELLIPSOID, int(cls), material, np.asarray(color, float), np.zeros((0, 4)),
                _place(_NO_PLANES, corners, T)[1], T, np.array([r[0], r[1], r[2], 0.0]), float(s))


def frames(origin: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """[N, 4, 4] :func:`frame` for N origins ([N, 3]) and yaws ([N])."""
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.zeros((len(yaw), 4, 4))
    T[:, 0, 0], T[:, 0, 1], T[:, 1, 0], T[:, 1, 1] = c, -s, s, c
    T[:, :3, 3] = origin
    T[:, 2, 2] = T[:, 3, 3] = 1.0
    return T


def boxes(T: np.ndarray, lo: np.ndarray, hi: np.ndarray, cls, material, color: np.ndarray, s: np.ndarray,
          params: np.ndarray | None = None) -> PrimTable:
    """N :func:`box` es at once (the same numbers): frames [N, 4, 4], corners [N, 3], classes and
    materials (one or [N]), colours [N, 3], arc lengths [N], material parameters [N, 4] (default 0)."""
    n = len(T)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    planes = np.empty((n, MAX_PLANES, 4))
    planes[:, :, :3] = _BOX_NORMALS
    planes[:, :3, 3] = hi
    planes[:, 3:, 3] = -lo
    corners = np.ascontiguousarray(np.concatenate((lo, hi), 1)[:, _CORNERS])
    return PrimTable(np.full(n, Kind.CONVEX, np.int8), np.broadcast_to(np.asarray(cls, np.uint8), n).copy(),
                     np.broadcast_to(np.asarray(material, np.int8), n).copy(), np.asarray(color, float),
                     kernels.place_planes(planes, T), np.full(n, MAX_PLANES, np.int64),
                     kernels.place_points(corners, T), T, np.zeros((n, 4)) if params is None else np.asarray(params, float),
                     np.asarray(s, float))


def ellipsoids(centre: np.ndarray, radii: np.ndarray, cls: int, material: Material, color: np.ndarray,
               yaw: np.ndarray, s: np.ndarray) -> PrimTable:
    """N :func:`ellipsoid` s at once (the same numbers): centres and radii [N, 3], colours
    [N, 3], yaws and arc lengths [N]."""
    n = len(centre)
    T = frames(centre, yaw)
    planes = np.zeros((n, MAX_PLANES, 4))
    planes[:, :, 3] = 1.0
    params = np.zeros((n, 4))
    params[:, :3] = radii
    corners = np.ascontiguousarray(np.concatenate((-radii, radii), 1)[:, _CORNERS])
    return PrimTable(np.full(n, Kind.ELLIPSOID, np.int8), np.full(n, cls, np.uint8), np.full(n, material, np.int8),
                     np.asarray(color, float), planes, np.zeros(n, np.int64), kernels.place_points(corners, T), T,
                     params, np.asarray(s, float))


@dataclass
class PrimTable:
    """Struct of arrays over N primitives (planes padded to ``MAX_PLANES`` with ``0 . x <= 1``)."""

    kind: np.ndarray  # [N] int8
    cls: np.ndarray  # [N] uint8
    material: np.ndarray  # [N] int8
    color: np.ndarray  # [N, 3]
    planes: np.ndarray  # [N, MAX_PLANES, 4]
    nplanes: np.ndarray  # [N]
    verts: np.ndarray  # [N, 8, 3]
    frame: np.ndarray  # [N, 4, 4]
    params: np.ndarray  # [N, 4]
    s: np.ndarray  # [N]

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    @classmethod
    def empty(cls) -> PrimTable:
        return cls(np.zeros(0, np.int8), np.zeros(0, np.uint8), np.zeros(0, np.int8), np.zeros((0, 3)),
                   np.zeros((0, MAX_PLANES, 4)), np.zeros(0, np.int64), np.zeros((0, 8, 3)),
                   np.zeros((0, 4, 4)), np.zeros((0, 4)), np.zeros(0))

    @classmethod
    def from_prims(cls, prims: list[Prim]) -> PrimTable:
        if not prims:
            return cls.empty()
        n = len(prims)
        planes = np.zeros((n, MAX_PLANES, 4))
        planes[:, :, 3] = 1.0
        nplanes = np.zeros(n, np.int64)
        for i, p in enumerate(prims):
            k = len(p.planes)
            planes[i, :k] = p.planes
            nplanes[i] = k
        return cls(
            kind=np.array([p.kind for p in prims], np.int8),
            cls=np.array([p.cls for p in prims], np.uint8),
            material=np.array([p.material for p in prims], np.int8),
            color=np.array([p.color for p in prims], float),
            planes=planes,
            nplanes=nplanes,
            verts=np.array([p.verts for p in prims], float),
            frame=np.array([p.frame for p in prims], float),
            params=np.array([p.params for p in prims], float),
            s=np.array([p.s for p in prims], float),
        )

    def take(self, index: np.ndarray) -> PrimTable:
        return PrimTable(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    @staticmethod
    def concat(tables: list[PrimTable]) -> PrimTable:
        tables = [t for t in tables if len(t)]
        if not tables:
            return PrimTable.empty()
        fields_ = PrimTable.__dataclass_fields__
        return PrimTable(*(np.concatenate([getattr(t, f) for t in tables]) for f in fields_))

    def sorted_by_s(self) -> PrimTable:
        return self.take(np.argsort(self.s, kind="stable"))
