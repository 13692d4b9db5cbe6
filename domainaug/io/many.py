"""Many files into one sample: a mapping of layer name to file(s), or a list of per-band files.

Forms (see ``domainaug.io.load``):

- ``{"t1": p1, "flair": p2, "label": p3}`` (or a list of ``(name, path)`` pairs): one layer per
  entry, named by its key. Names in ``labels`` (default ``("label",)``) are LABEL layers, every
  other entry an INTENSITY layer. A value may itself be a list of files, stacked as the channels of
  that layer (``{"image_t0": [b02_t0, b03_t0], "image_t1": [b02_t1, b03_t1]}``: dates as layers).
- ``[b02.tif, b03.tif, ...]``: one ``"image"`` layer whose channels are the files' bands, in order.

Grids: the reference grid (``sample.space``) is the first intensity layer's. A layer whose files
are on another grid of the same world (same CRS, overlapping extent) is a layer on a grid of its
own (``sample.grids``, ``sample.space_of(name)``): a 3 mm FLAIR beside a 1 mm T1, a label on
its own grid in the mapping form. A bare list of band files on several grids (Sentinel-2 at 10,
20 and 60 m) becomes one layer per grid: ``"image"`` on the finest grid, then ``"image_<spacing>"``
(``image_20``, ``image_60``), each with its bands in the order given, and
``sample.meta["band_groups"] = {"image": [those layers]}``, so that raster ops given
``layer="image"`` change every band with one draw. The files of one layer (its
channels) share one grid, and ``label=`` is on the image's grid. A file in another CRS, of another
dimension, or outside the world extent of the first raises ``SpaceMismatchError`` naming both
files and what differs. ``ResampleToMatch(target=...)`` puts every layer on one grid, fused with
the augmentation's warps.

Channel names of a stacked layer (a list of files), per file and band: the band's description
when the file has one; else, for a single-band file, the last token of the file name (extension
removed, tokens split at ``_``, ``-``, ``.``, spaces) of the form ``B<digits>[A]``, with a
preceding product-level token ``SR``/``ST``/``TOA``/``BOA`` kept (``LE07_L2SP_..._B1.TIF`` ->
``B1``, ``LC08_..._SR_B4.TIF`` -> ``SR_B4``, ``T33UUP_..._B8A_20m.tif`` -> ``B8A``), upper-cased;
the whole stem when no token matches; a multi-band file without descriptions gets
``<that name>_<band number>``. With ``sensor=`` every name is then resolved by the rules of
``domainaug.remote_sensing.bands`` (``resolve_bands``) to the sensor's band name (``SR_B4`` ->
``B4``; ``green`` -> ``B3`` for landsat8), and a name the sensor does not have is an error. The
same name twice in one layer is an error (dates go in layers of their own, ``image_t<k>``).

Values and validity: each intensity layer is float32 (the policy of ``load``), with its own fill
(``fill`` may map layer names to fills; default: the files' shared finite nodata value, else the
minimum of the valid voxels). On each grid one VALID layer is the AND over its intensity layers'
validity (nodata, masks, non-finite values): ``"valid"`` on the reference grid, ``"<layer>_valid"``
on another (named after its first intensity layer); labels do not enter it. Invalid voxels hold each
intensity layer's fill, as for one file. Label nodata becomes 0.

Metadata: ``sample.meta["layers"][name]`` is the layer's file metadata (``"path"`` its file; for a
stacked layer the list of files, and the first file's layout with the bands' descriptions, tags,
scales, offsets and units gathered in channel order), so ``save(sample, path, layer=name)``
writes each layer back as it came; a stacked layer is written as one multi-band file.
``sample.meta["path"]``/``["format"]`` name the first intensity layer's (first) file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.sample import Layer, Role, Sample, resolve_fill
from ..core.space import Space, check_same_world
from ..errors import NoDataError, ParameterError, SpaceMismatchError
from .common import file_fill, file_validity, grid_error, intensity_tensor, label_layer

__all__ = ["is_many", "load_many", "band_name_from_file"]

_EXT = re.compile(r"\.(tif|tiff|jp2|nii|nii\.gz|mha|mhd|nrrd|nhdr)$", re.IGNORECASE)
_TOKENS = re.compile(r"[_\-.\s]+")
_BAND_TOKEN = re.compile(r"^B\d+A?$", re.IGNORECASE)
_LEVEL_TOKEN = re.compile(r"^(SR|ST|TOA|BOA)$", re.IGNORECASE)
_PATH = (str, os.PathLike)


def is_many(path: Any) -> bool:
    """Whether ``path`` is one of the many-file forms (a mapping or a list/tuple)."""
    return isinstance(path, (Mapping, list, tuple))


def band_name_from_file(path: str | os.PathLike) -> str:
    """The band name the module rules give a single-band file without a band description."""
    stem = _EXT.sub("", Path(path).name)
    tokens = [t for t in _TOKENS.split(stem) if t]
    for i in range(len(tokens) - 1, -1, -1):
        if _BAND_TOKEN.match(tokens[i]):
            name = tokens[i].upper()
            if i > 0 and _LEVEL_TOKEN.match(tokens[i - 1]):
                name = f"{tokens[i - 1].upper()}_{name}"
            return name
    return stem


def _entries(path: Any, label: Any) -> tuple[list[tuple[str, Any]], bool]:
    """``[(name, path or list of paths)]`` and whether the input was a bare list of files."""
    if isinstance(path, Mapping):
        if label is not None:
            raise ParameterError("label", str(label), "None with a mapping of layers: put the label in the "
                                 "mapping (label= is for one image or a list of band files)")
        return list(path.items()), False
    items = list(path)
    if not items:
        raise ParameterError("path", path, "at least one file")
    pairs = [isinstance(i, (tuple, list)) and len(i) == 2 and isinstance(i[0], str) for i in items]
    if all(pairs):
        if label is not None:
            raise ParameterError("label", str(label), "None with (name, path) pairs: put the label in the pairs")
        return [(n, p) for n, p in items], False
    if not all(isinstance(i, _PATH) for i in items):
        raise ParameterError("path", [type(i).__name__ for i in items],
                             "a list of paths (band files) or of (name, path) pairs, not a mix")
    entries: list[tuple[str, Any]] = [("image", items)]
    if label is not None:
        entries.append(("label", label))
    return entries, True


def _check_names(entries: list[tuple[str, Any]], labels: Sequence[str]) -> None:
    seen: dict[str, Any] = {}
    for name, spec in entries:
        if not isinstance(name, str) or not name:
            raise ParameterError("path", name, "layer names that are non-empty strings")
        if name == "valid":
            raise ParameterError("path", name, "a layer name other than 'valid' (load makes the VALID layer)")
        if name in seen:
            raise ParameterError("path", name, f"distinct layer names; {name!r} is given twice "
                                 f"({seen[name]} and {spec})")
        seen[name] = spec
        files = spec if isinstance(spec, (list, tuple)) else [spec]
        if not files or not all(isinstance(f, _PATH) for f in files):
            raise ParameterError(f"path[{name!r}]", spec, "a path or a list of paths")
        if name in labels and len(files) != 1:
            raise ParameterError(f"path[{name!r}]", spec, "one file for a label layer")
    missing = [n for n in labels if n not in seen and n != "label"]
    if missing:
        raise ParameterError("labels", list(labels), f"names of layers in the input ({', '.join(seen)}); "
                             f"not there: {', '.join(missing)}")


def check_grid(ref: Space, ref_path: Any, other: Space, path: Any, equivalent_crs: bool) -> bool:
    """Whether ``other`` (of ``path``) is on ``ref``'s grid (voxel centres within 1e-3 voxels); a
    ``SpaceMismatchError`` naming both files when it cannot be a grid of the same sample at all
    (other dimension, another CRS, no overlap in the world)."""
    check_same_world(ref, str(ref_path), other, str(path), equivalent_crs=equivalent_crs)
    return other.same_grid(ref, tolerance=1e-3, equivalent_crs=equivalent_crs)


def check_same_grid(ref: Space, ref_path: Any, other: Space, path: Any, equivalent_crs: bool, why: str) -> None:
    """Raise ``SpaceMismatchError`` unless ``other`` (of ``path``) is on ``ref``'s grid."""
    if not check_grid(ref, ref_path, other, path, equivalent_crs):
        raise SpaceMismatchError(f"{path} is on another grid than {ref_path}: {grid_error(ref, other)} "
                                 f"({Path(str(ref_path)).name} vs {Path(str(path)).name}); {why}")


def _grid_groups(files: list[Any], raws: dict[Any, dict[str, Any]], equivalent_crs: bool) -> list[list[Any]]:
    """The files grouped by grid, the finest grid first (files keep their order within a group)."""
    groups: list[list[Any]] = []
    for f in files:
        for g in groups:
            if check_grid(raws[g[0]]["space"], g[0], raws[f]["space"], f, equivalent_crs):
                g.append(f)
                break
        else:
            groups.append([f])
    return sorted(groups, key=lambda g: float(np.prod(raws[g[0]]["space"].spacing)))


def _grid_name(space: Space, taken: Sequence[str]) -> str:
    """``image_<spacing>`` for a group of band files on a coarser grid (``image_20``, ``image_60``)."""
    base = "image_" + "x".join(dict.fromkeys(f"{v:g}" for v in np.round(space.spacing, 6)))
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def _channel_names(files: list[Any], raws: list[dict[str, Any]], sensor: str | None, layer: str) -> list[str]:
    from ..remote_sensing.bands import is_unnamed, resolve_bands
    names: list[str] = []
    where: list[Any] = []
    for f, raw in zip(files, raws):
        count = raw["data"].shape[0]
        descriptions = list(raw["meta"].get("band_descriptions") or [None] * count)
        base = band_name_from_file(f)
        for i in range(count):
            d = descriptions[i] if i < len(descriptions) else None
            names.append(str(d).strip() if not is_unnamed(d) else base if count == 1 else f"{base}_{i + 1}")
            where.append(f)
    if sensor is not None:
        names = [b.name for b in resolve_bands(names, sensor, layer)]
    firsts: dict[str, Any] = {}
    for n, f in zip(names, where):
        if n in firsts:
            raise ParameterError("path", n, f"distinct band names in layer {layer!r}; band {n!r} comes twice "
                                 f"({firsts[n]} and {f}). If these are two dates, give each date a layer of its "
                                 "own: {'image_t0': [...], 'image_t1': [...]}")
        firsts[n] = f
    return names


def _stacked_meta(files: list[Any], raws: list[dict[str, Any]], channels: list[str]) -> dict[str, Any]:
    """The first file's metadata, with the per-band entries of every file in channel order."""
    meta = dict(raws[0]["meta"])
    meta["path"] = [str(f) for f in files]
    if meta.get("format") != "geotiff":
        return meta
    nodatas = {r["meta"].get("nodata") for r in raws}
    meta["nodata"] = nodatas.pop() if len(nodatas) == 1 else None      # differing nodata: save uses a mask
    meta["on_disk_dtype"] = np.result_type(*[np.dtype(r["meta"]["on_disk_dtype"]) for r in raws]).name
    meta["channels"] = list(channels)
    meta["band_descriptions"] = list(channels)
    meta["colorinterp"] = ["gray"] + ["undefined"] * (len(channels) - 1)
    meta["colormap"] = None
    for key in ("band_tags", "scales", "offsets", "units"):
        meta[key] = [v for r in raws for v in (r["meta"].get(key) or [])]
    return meta


def load_many(path: Any, label: Any, *, read: Callable[[Any], dict[str, Any]], equivalent_crs: bool, dtype: Any,
              fill: Any, labels: Sequence[str], sensor: str | None) -> Sample:
    if isinstance(labels, str):
        labels = (labels,)
    labels = tuple(labels)
    entries, bare_list = _entries(path, label)
    if bare_list and label is not None and "label" not in labels:
        labels = labels + ("label",)
    _check_names(entries, labels)
    fills = fill if isinstance(fill, Mapping) else {}
    raws: dict[Any, dict[str, Any]] = {}
    for _, spec in entries:
        for f in (list(spec) if isinstance(spec, (list, tuple)) else [spec]):
            if f not in raws:
                raws[f] = read(f)
    if bare_list:                                    # band files on several grids: one layer per grid
        groups = _grid_groups(list(entries[0][1]), raws, equivalent_crs)
        if len(groups) > 1:
            split: list[tuple[str, Any]] = [("image", groups[0])]
            for g in groups[1:]:
                split.append((_grid_name(raws[g[0]]["space"], [n for n, _ in split]), g))
            entries = split + entries[1:]
    unknown = [k for k in fills if k not in dict(entries) or k in labels]
    if unknown:
        raise ParameterError("fill", dict(fill),
                             f"fills keyed by intensity layers; not one: {', '.join(map(str, unknown))}")

    # every layer on one grid: the reference (the first intensity layer's), or a grid of its own
    order = [e for e in entries if e[0] not in labels] + [e for e in entries if e[0] in labels]
    ref_file = (list(order[0][1]) if isinstance(order[0][1], (list, tuple)) else [order[0][1]])[0]
    ref = raws[ref_file]["space"]
    grid_of: dict[str, Space] = {}
    own: list[tuple[Space, Any]] = []                # distinct grids other than the reference
    read_layers: list[tuple[str, list[Any], list[dict[str, Any]], bool]] = []
    for name, spec in order:
        files = list(spec) if isinstance(spec, (list, tuple)) else [spec]
        first = raws[files[0]]["space"]
        for f in files[1:]:
            check_same_grid(first, files[0], raws[f]["space"], f, equivalent_crs,
                            f"the files of layer {name!r} are its channels and share one grid")
        if bare_list and label is not None and name == "label":
            check_same_grid(ref, ref_file, first, files[0], equivalent_crs, "label= is on the image's grid (give a "
                            "mapping with the label as a layer to load it on its own grid)")
        if check_grid(ref, ref_file, first, files[0], equivalent_crs):
            grid_of[name] = ref
        else:
            grid_of[name] = next((g for g, gf in own if check_grid(g, gf, first, files[0], equivalent_crs)), first)
            if all(g is not grid_of[name] for g, _ in own):
                own.append((first, files[0]))
        read_layers.append((name, files, [raws[f] for f in files], isinstance(spec, (list, tuple))))

    values: dict[str, torch.Tensor] = {}
    valids: dict[Space, torch.Tensor | None] = {}
    layer_meta: dict[str, dict[str, Any]] = {}
    channels: dict[str, tuple[str, ...] | None] = {}
    for name, files, layer_raws, stacked in read_layers:
        if name in labels:
            continue
        parts = []
        for _file, raw in zip(files, layer_raws):
            data = intensity_tensor(raw["data"], raw.get("scale"), dtype)
            valids[grid_of[name]] = file_validity(raw, data, valids.get(grid_of[name]), raw["meta"])
            parts.append(data)
        if len({p.dtype for p in parts}) > 1:
            parts = [p.to(torch.float64) for p in parts]
        values[name] = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
        if stacked:
            names = _channel_names(files, layer_raws, sensor, name)
            channels[name] = tuple(names)
            layer_meta[name] = _stacked_meta(files, layer_raws, names)
            if any(r["meta"].get("non_finite") for r in layer_raws):
                layer_meta[name]["non_finite"] = True
        else:
            channels[name] = layer_raws[0].get("channels")
            layer_meta[name] = {**layer_raws[0]["meta"], "path": str(files[0])}
    for grid, valid in valids.items():
        if valid is not None and not bool(valid.any()):
            on = [n for n, _, _, _ in read_layers if grid_of[n] is grid]
            raise NoDataError(f"{[str(f) for n, fs, _, _ in read_layers if n in on for f in fs]}: no voxel is valid "
                              "in every intensity layer of that grid (nodata, mask or NaN)")

    layers: dict[str, Layer] = {}
    valid_names: dict[Space, str] = {}
    masks: dict[Space, torch.Tensor] = {}            # the VALID data of each grid in ``valid_names``
    for name, files, layer_raws, _ in read_layers:
        grid = grid_of[name]
        if name in labels:
            layers[name], layer_meta[name] = label_layer(layer_raws[0], files[0], name)
            continue
        data, valid = values[name], valids.get(grid)
        chosen = fills.get(name) if isinstance(fill, Mapping) else fill
        if chosen is None:
            chosen = file_fill([r.get("fill") for r in layer_raws], data)
        fill_value = resolve_fill(data, valid, chosen)
        if valid is not None:
            data = torch.where(valid, data, torch.full_like(data, fill_value))
            valid_names.setdefault(grid, "valid" if grid is ref else f"{name}_valid")
            masks[grid] = valid
        layers[name] = Layer(data, Role.INTENSITY, fill_value, channels[name])
    taken = {n for n, _ in entries}
    for grid, vname in valid_names.items():
        if vname in taken:
            raise ParameterError("path", vname, f"layer names other than {vname!r} (load makes that VALID layer)")
        layers[vname] = Layer(masks[grid], Role.VALID)
    ordered = {n: layers[n] for n, _ in entries if n in layers}
    ordered.update({v: layers[v] for v in valid_names.values()})
    grids = {n: grid_of[n] for n in grid_of if grid_of[n] is not ref}
    grids.update({v: g for g, v in valid_names.items() if g is not ref})
    first = next((e for e in read_layers if e[0] not in labels), read_layers[0])
    meta = {"path": str(first[1][0]), "format": first[2][0]["format"], "reference": first[0],
            "layers": {n: layer_meta[n] for n, _ in entries}}
    if bare_list and len([n for n, _ in entries if n not in labels]) > 1:   # one product's bands on several grids
        meta["band_groups"] = {"image": [n for n, _ in entries if n not in labels]}
    return Sample(ref, ordered, meta=meta, grids=grids)
