"""The torch path (any device): the CPU kernel's arithmetic for a batch of samples, in float32.

The B elements of a batch share the source and output shapes; their maps differ. The coordinate
lattice of every element is evaluated on the device in one go (``BatchMap``): the output-aligned
nodes of ``maps.coordinate_lattice`` are pulled back stage by stage, each field looked up with a
trilinear, border-clamped ``grid_sample`` on its lattice, in the frame of that lattice's indices
(world coordinates, which may be 10^6 m in a projected CRS, never meet float32). An affine-only
map is evaluated at each voxel directly. The nodes are then interpolated linearly to the output
voxels slab by slab (at most ``CHUNK_VOXELS`` voxels of the batch at a time), and every layer is
sampled from the slab's coordinates with one ``grid_sample`` (linear) or gathers (nearest,
argmax, cubic) for the whole batch.

Differences from the CPU kernel, all from float32 coordinates (the CPU kernel interpolates them
in float64 and rounds the fractions to float32): a coordinate is off by a few float32 ulps of its
magnitude (about 1e-5 voxel at index 500), so linear values differ by that times the gradient;
a nearest tap, an argmax label, the field-of-view test and the 1/2-weight VALID test can flip
where the exact value lies within that distance of the decision (a fraction of voxels of order
1e-5 for random maps; exact ties such as half-voxel shifts resolve as on the CPU, to the lower
tap). Data that needs float64 (float64, int32 and int64 intensities, as on the CPU) is
interpolated with float64 coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..maps import Field, PendingMap, lattice_axes, lattice_steps
from ..values import cast
from .spec import LayerSpec

__all__ = ["resample_torch", "resample_torch_batch", "BatchMap", "CHUNK_VOXELS"]

#: Output voxels of the whole batch sampled at a time: 4M keeps the slab's coordinates, tap
#: indices and values to a few hundred MB (a batch of 4 x 160x192x160 runs in 5 slabs).
CHUNK_VOXELS = 1 << 22

_EPS = 1e-6         # the field-of-view and VALID tolerances of the CPU kernel


def _pull_back_program(pending: PendingMap) -> tuple[list[tuple[np.ndarray, Field]], np.ndarray]:
    """The map as frame changes (float64, on the host): per field stage the ``(n, n+1)`` matrix
    from the previous frame to the field's lattice index, which becomes the next frame; then the
    matrix from the last frame to the source index. The first frame is the output index."""
    n = pending.space.ndim
    to_world = np.asarray(pending.space.affine, np.float64)     # current frame -> world
    ops = []
    for stage in pending.stages:
        if isinstance(stage, Field):
            ops.append(((stage.to_lattice @ to_world)[:n], stage))
            to_world = np.linalg.inv(stage.to_lattice)
        else:
            to_world = stage @ to_world
    return ops, (pending.source.inverse @ to_world)[:n]


def _apply_rows(m: torch.Tensor, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``m @ (x, 1)`` for per-element matrices ``m`` (B, n, n+1) and coordinates ``x`` (n tensors
    broadcasting to (B, ...)), as elementwise multiply-adds in a fixed order (a batched matmul may
    sum in another order for another batch size)."""
    n = len(x)
    out = []
    for i in range(n):
        shape = (m.shape[0],) + (1,) * (max(t.dim() for t in x) - 1)
        acc = m[:, i, n].view(shape) + m[:, i, 0].view(shape) * x[0]
        for j in range(1, n):
            acc = acc + m[:, i, j].view(shape) * x[j]
        out.append(acc)
    return out


def _normalized(coords: Sequence[torch.Tensor], shape: Sequence[int]) -> torch.Tensor:
    """``grid_sample`` coordinates (align_corners=True; last axis first) of index coordinates."""
    return torch.stack([coords[a] * (2.0 / max(shape[a] - 1, 1)) - 1.0 for a in reversed(range(len(shape)))], -1)


@dataclass
class BatchMap:
    """Source-index coordinates of a batch of maps that share their structure, on the device.

    ``matrix`` (B, n, n+1): an affine-only map, output index -> source index; else ``nodes``: n
    tensors (B, *K), the source index at the coordinate lattice's nodes ``k * steps``.
    """

    out_shape: tuple[int, ...]
    steps: list[int]
    matrix: torch.Tensor | None = None
    nodes: list[torch.Tensor] | None = None

    @staticmethod
    def build(pendings: Sequence[PendingMap], device: torch.device, dtype: torch.dtype) -> BatchMap:
        """Pull the lattice nodes of every element back through its stages, all elements at once.
        The elements must share the output shape, the steps and the stage structure (``group_key``)."""
        out_shape = tuple(pendings[0].space.shape)
        n = len(out_shape)
        programs = [_pull_back_program(p) for p in pendings]

        def stacked(mats: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.stack(mats)).to(device=device, dtype=dtype)

        final = stacked([f for _, f in programs])
        if not programs[0][0]:
            return BatchMap(out_shape, [max(1, s - 1) for s in out_shape], matrix=final)
        steps = lattice_steps(pendings[0])
        axes = lattice_axes(out_shape, steps)
        grids = torch.meshgrid(*[torch.as_tensor(a, dtype=dtype, device=device) for a in axes], indexing="ij")
        x: list[torch.Tensor] = [g[None] for g in grids]                          # output index at the nodes
        for k in range(len(programs[0][0])):
            to_lattice = stacked([ops[k][0] for ops, _ in programs])
            lattice = torch.from_numpy(np.stack([ops[k][1].lattice for ops, _ in programs])).to(device=device,
                                                                                               dtype=dtype)
            # the field in lattice-index units: linear part of world -> lattice, times the world displacement
            linear = stacked([ops[k][1].to_lattice[:n, :n] for ops, _ in programs])
            shape = (lattice.shape[0],) + (1,) * n
            rows = []
            for i in range(n):
                acc = linear[:, i, 0].view(shape) * lattice[:, 0]
                for j in range(1, n):
                    acc = acc + linear[:, i, j].view(shape) * lattice[:, j]
                rows.append(acc)
            disp = torch.stack(rows, 1)
            g = _apply_rows(to_lattice, x)
            grid = _normalized(g, lattice.shape[2:])
            d = F.grid_sample(disp, grid, mode="bilinear", padding_mode="border", align_corners=True)
            x = [g[i] + d[:, i] for i in range(n)]
        return BatchMap(out_shape, steps, nodes=_apply_rows(final, x))

    def coordinates(self, lo: int, hi: int) -> list[torch.Tensor]:
        """Source-index coordinates of output rows ``lo .. hi - 1`` (along the first axis): n
        tensors (B, hi - lo, *out_shape[1:])."""
        if self.matrix is not None:
            m = self.matrix
            n = len(self.out_shape)
            idx = []
            for a in range(n):
                r = torch.arange(lo, hi) if a == 0 else torch.arange(self.out_shape[a])
                shape = [1] * (n + 1)
                shape[a + 1] = -1
                idx.append(r.to(device=m.device, dtype=m.dtype).view(shape))
            return _apply_rows(m, idx)
        if self.nodes is None:
            raise ValueError("a BatchMap holds a matrix or nodes")
        c = torch.stack(self.nodes)                                   # (n, B, *K): one op per axis for all n
        for a, (size, step) in enumerate(zip(self.out_shape, self.steps)):
            k_count = c.shape[a + 2]
            v = torch.arange(lo, hi) if a == 0 else torch.arange(size)
            k = torch.clamp(v // step, max=k_count - 2)
            f = ((v - k * step).to(torch.float64) / step).to(device=c.device, dtype=c.dtype)
            k = k.to(c.device)
            shape = [1] * c.dim()
            shape[a + 2] = -1
            # the node differences at node resolution, then two selections per output voxel
            diff = c.narrow(a + 2, 1, k_count - 1) - c.narrow(a + 2, 0, k_count - 1)
            c = c.index_select(a + 2, k) + f.view(shape) * diff.index_select(a + 2, k)
        return list(c.unbind(0))


def group_key(pending: PendingMap) -> tuple:
    """Elements with equal keys share a ``BatchMap``: the steps, and each stage's kind and lattice shape."""
    structure = tuple(("field",) + s.lattice.shape if isinstance(s, Field) else ("affine",) for s in pending.stages)
    if not any(isinstance(s, Field) for s in pending.stages):
        return ("affine",)
    return (tuple(lattice_steps(pending)),) + structure


def _cubic_weights(f: torch.Tensor) -> list[torch.Tensor]:
    """Catmull-Rom (a = -0.5) weights of the taps at -1, 0, 1, 2 for fractions ``f``."""
    return [((-0.5 * f + 1.0) * f - 0.5) * f, (1.5 * f - 2.5) * f * f + 1.0,
            ((-1.5 * f + 2.0) * f + 0.5) * f, (0.5 * f - 0.5) * f * f]


def _flat(idx: Sequence[torch.Tensor], shape: Sequence[int]) -> torch.Tensor:
    out = idx[0]
    for a in range(1, len(shape)):
        out = out * shape[a] + idx[a]
    return out


def _take(flat_src: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``flat_src`` (B, C, V) at flat indices ``index`` (B, N): (B, C, N)."""
    return flat_src.gather(2, index[:, None].expand(-1, flat_src.shape[1], -1))


def _eroded(valid: torch.Tensor, n: int) -> torch.Tensor:
    """True where the 4^n cubic taps around each lower index (offsets -1 .. 2, border clamped) are all valid."""
    pad = [1, 2] * n
    shrunk = F.pad(1.0 - valid.float(), pad, mode="replicate")
    pooled = (F.max_pool3d if n == 3 else F.max_pool2d)(shrunk, kernel_size=4, stride=1)
    return pooled == 0


@dataclass
class _Sources:
    """The layers' data as the sampler reads it, for the elements of one group."""

    work: list[torch.Tensor | None]           # per spec: intensity in the work dtype (B, C, *src)
    weighted: list[torch.Tensor | None]       # per spec: intensity times VALID (linear, cubic)
    valid: torch.Tensor | None                # (B, 1, *src) in the work dtype
    eroded: torch.Tensor | None               # (B, V) bool, for cubic with VALID


def _sources(specs: list[LayerSpec], rows, dtype: torch.dtype) -> _Sources:
    valid_spec = next((s for s in specs if s.kind == "valid"), None)
    valid = valid_spec.data[rows].to(dtype) if valid_spec is not None else None
    n = specs[0].data.dim() - 2
    work, weighted = [], []
    for s in specs:
        x = s.data[rows].to(dtype) if s.kind == "intensity" else None
        work.append(x)
        weighted.append(x * valid if x is not None and valid is not None and s.mode != "nearest" else None)
    eroded = None
    if valid is not None and any(s.kind == "intensity" and s.mode == "cubic" for s in specs):
        eroded = _eroded(valid, n).reshape(valid.shape[0], -1)
    return _Sources(work, weighted, valid, eroded)


def _sample_slab(specs: list[LayerSpec], src: _Sources, s: list[torch.Tensor],
                 src_shape: tuple[int, ...]) -> list[torch.Tensor]:
    """Every layer at source-index coordinates ``s`` (n tensors (B, *slab)); (B, C, *slab) each."""
    n = len(src_shape)
    b, slab = s[0].shape[0], tuple(s[0].shape[1:])
    dtype = s[0].dtype
    inside = torch.ones_like(s[0], dtype=torch.bool)
    for a in range(n):
        inside &= (s[a] >= -0.5 - _EPS) & (s[a] <= src_shape[a] - 0.5 + _EPS)
    c = [s[a].clamp(0, src_shape[a] - 1) for a in range(n)]
    i0 = [torch.clamp(c[a].floor(), max=max(src_shape[a] - 2, 0)).long() for a in range(n)]
    f = [c[a] - i0[a] for a in range(n)]
    step = [(1 if src_shape[a] > 1 else 0) for a in range(n)]
    grid = _normalized(c, src_shape) if any(sp.kind != "label" for sp in specs) else None
    inside_c = inside[:, None]

    def flat_taps(bits: Sequence[int]) -> torch.Tensor:
        return _flat([i0[a] + step[a] * bits[a] for a in range(n)], src_shape).reshape(b, -1)

    def tap_weight(bits: Sequence[int]) -> torch.Tensor:
        w = f[0] if bits[0] else 1 - f[0]
        for a in range(1, n):
            w = w * (f[a] if bits[a] else 1 - f[a])
        return w.reshape(b, -1)

    taps = [[(t >> (n - 1 - a)) & 1 for a in range(n)] for t in range(1 << n)]   # last axis: lowest bit
    nearest = _flat([i0[a] + (f[a] > 0.5).long() * step[a] for a in range(n)], src_shape).reshape(b, -1)

    if src.valid is not None:
        assert grid is not None
        vsum = F.grid_sample(src.valid, grid, mode="bilinear", padding_mode="border", align_corners=True)
        valid_out = inside_c & (vsum >= 0.5 - _EPS)
        flat_valid = src.valid.reshape(b, 1, -1)
    else:
        vsum, valid_out, flat_valid = None, inside_c, None
    outs: list[torch.Tensor] = []
    linear_cache: dict[int, torch.Tensor] = {}

    def linear(k: int) -> torch.Tensor:
        if k not in linear_cache:
            data = src.work[k] if vsum is None else src.weighted[k]
            assert data is not None and grid is not None
            value = F.grid_sample(data, grid, mode="bilinear", padding_mode="border", align_corners=True)
            linear_cache[k] = value if vsum is None else value / vsum
        return linear_cache[k]

    for k, spec in enumerate(specs):
        channels = spec.data.shape[1]
        if spec.kind == "valid":
            outs.append(valid_out)
            continue
        if spec.kind == "label":
            flat = spec.data.reshape(b, channels, -1)
            outs.append(_label(spec, flat, taps, flat_taps, tap_weight, nearest, dtype, inside_c, b, slab))
            continue
        x = src.work[k]
        assert x is not None
        flat_x = x.reshape(b, channels, -1)
        if spec.mode == "nearest" and flat_valid is None:
            value = _take(flat_x, nearest)
        elif spec.mode == "nearest" and flat_valid is not None:   # the largest weight among valid taps (ties: lower)
            best = torch.full((b, 1, nearest.shape[1]), -1.0, dtype=dtype, device=x.device)
            pick = nearest[:, None]
            for bits in taps:
                idx = flat_taps(bits)[:, None]
                score = tap_weight(bits)[:, None] * flat_valid.gather(2, idx)
                better = score > best
                best, pick = torch.where(better, score, best), torch.where(better, idx, pick)
            value = _take(flat_x, pick[:, 0])
        else:
            value = linear(k).reshape(b, channels, -1)
            if spec.mode == "cubic":
                value = torch.where(_all_valid(src, c, src_shape), _cubic(flat_x, c, src_shape), value) \
                    if src.eroded is not None else _cubic(flat_x, c, src_shape)
        value = value.reshape((b, channels) + slab)
        value = torch.where(valid_out, value, torch.full_like(value, spec.fill))
        outs.append(cast(value, spec.data.dtype))
    return outs


def _label(spec, flat, taps, flat_taps, tap_weight, nearest, dtype, inside_c, b, slab):
    """Nearest: the tap with the largest weight (per axis the upper tap iff its fraction is above
    1/2, as on the CPU); argmax: the label with the largest summed weight over the taps, ties to
    the lower tap (scores within float32 rounding count as ties)."""
    channels = flat.shape[1]
    if spec.mode == "nearest":
        value = _take(flat, nearest)
    else:
        labs = [_take(flat, flat_taps(bits)) for bits in taps]
        weights = [tap_weight(bits)[:, None] for bits in taps]
        tie = 1e-12 if dtype == torch.float64 else 1e-6
        best = torch.full(labs[0].shape, -1.0, dtype=dtype, device=flat.device)
        value = labs[0]
        for lt in labs:
            score = torch.zeros_like(best)
            for lu, wu in zip(labs, weights):
                score = score + torch.where(lu == lt, wu, 0.0)
            better = score > best + tie
            best, value = torch.where(better, score, best), torch.where(better, lt, value)
    value = value.reshape((b, channels) + slab)
    return torch.where(inside_c, value, torch.full_like(value, spec.fill))


def _cubic(flat_x: torch.Tensor, c: list[torch.Tensor], src_shape: tuple[int, ...]) -> torch.Tensor:
    """Catmull-Rom over the 4^n taps around the clamped positions ``c`` (border clamped): (B, C, N)."""
    n = len(src_shape)
    b = c[0].shape[0]
    i = [c[a].floor() for a in range(n)]
    w = [_cubic_weights(c[a] - i[a]) for a in range(n)]
    idx = [[(i[a].long() - 1 + p).clamp(0, src_shape[a] - 1) for p in range(4)] for a in range(n)]
    acc = torch.zeros((b, flat_x.shape[1], c[0][0].numel()), dtype=flat_x.dtype, device=flat_x.device)
    for offs in np.ndindex(*(4,) * n):
        weight = w[0][offs[0]]
        for a in range(1, n):
            weight = weight * w[a][offs[a]]
        tap = _flat([idx[a][offs[a]] for a in range(n)], src_shape).reshape(b, -1)
        acc = acc + weight.reshape(b, 1, -1) * _take(flat_x, tap)
    return acc


def _all_valid(src: _Sources, c: list[torch.Tensor], src_shape: tuple[int, ...]) -> torch.Tensor:
    assert src.eroded is not None
    b = c[0].shape[0]
    lower = _flat([c[a].floor().long() for a in range(len(src_shape))], src_shape).reshape(b, -1)
    return src.eroded.gather(1, lower)[:, None]


def resample_torch_batch(specs: list[LayerSpec], pendings: Sequence[PendingMap],
                         chunk_voxels: int = CHUNK_VOXELS) -> list[torch.Tensor]:
    """Every layer of a batch through its element's map: ``spec.data`` (B, C, *source) -> (B, C, *out).

    The elements share the source and output shapes; each has its own ``PendingMap``. Semantics
    and dtypes are those of the CPU kernel (see ``resample``), up to float32 rounding (module
    docstring); element b gives the same bits alone as in any batch. Value stages
    (``spec.gain``) are the caller's (``resample_layers_batch``).

    Args:
        specs: The layers; each ``data`` holds one element per pending.
        pendings: One map per element.
        chunk_voxels: Output voxels of the batch sampled at a time.
    """
    b = len(pendings)
    src_shape, out_shape = tuple(pendings[0].source.shape), tuple(pendings[0].space.shape)
    for p in pendings:
        if tuple(p.source.shape) != src_shape or tuple(p.space.shape) != out_shape:
            raise ValueError(f"a batch's maps share their shapes: {p.source.shape} -> {p.space.shape} against "
                             f"{src_shape} -> {out_shape}")
    for s in specs:
        if s.data.shape[0] != b or tuple(s.data.shape[2:]) != src_shape:
            raise ValueError(f"a batch layer is (B={b}, C, *{src_shape}), not {tuple(s.data.shape)}")
    device = specs[0].data.device
    wide = any(s.kind == "intensity" and s.data.dtype in (torch.float64, torch.int32, torch.int64) for s in specs)
    dtype = torch.float64 if wide else torch.float32            # as the CPU kernel's work dtype
    outs = [torch.empty((b, s.data.shape[1]) + out_shape, dtype=torch.bool if s.kind == "valid" else s.data.dtype,
                        device=device) for s in specs]
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(pendings):
        groups.setdefault(group_key(p), []).append(i)
    rest = math.prod(out_shape[1:])
    for members in groups.values():
        whole = len(members) == b
        rows = slice(None) if whole else torch.tensor(members, device=device)
        geometry = BatchMap.build([pendings[i] for i in members], device, dtype)
        src = _sources(specs, rows, dtype)
        group_specs = specs if whole else [LayerSpec(s.data[rows], s.kind, s.mode, s.fill) for s in specs]
        slab = max(1, chunk_voxels // (len(members) * rest))
        for lo in range(0, out_shape[0], slab):
            hi = min(out_shape[0], lo + slab)
            values = _sample_slab(group_specs, src, geometry.coordinates(lo, hi), src_shape)
            for out, value in zip(outs, values):
                out[rows, :, lo:hi] = value
    return outs


def resample_torch(specs: list[LayerSpec], pending: PendingMap) -> list[torch.Tensor]:
    """One sample: ``resample_torch_batch`` with a batch of one (the same arithmetic as element b of a batch)."""
    batch = [LayerSpec(s.data[None], s.kind, s.mode, s.fill) for s in specs]
    return [o[0] for o in resample_torch_batch(batch, [pending])]
