"""Write the transform gallery (docs/gallery/) from the registry: one section per registered transform.

Run by ``make docs`` before ``mkdocs build``; the output folder is gitignored, never edited by hand.
For each class of ``domainaug.Transform.registry`` (those domainaug defines), the page shows the
transform on the shipped T1 + labels (three mid-slices, labels outlined) and on the shipped RGBN
raster (natural and false colour): the original beside 3 draws of its contract case's random
instance (a strong draw: many defaults change little, ``Affine()`` is the identity), on the samples
its contract applies to. Below: the docstring summary, the arguments (signature defaults and the
docstring's ``Args:`` text, which carries units and ranges), which targets the draws moved, whether
it is spatial, its ``deterministic`` flag, the YAML of its default configuration and of the pictured
one. No CT is shipped: CT-specific ops are shown on the T1 (its values read as HU), as noted.

    python docs/gen_gallery.py [--out docs/gallery] [--no-pictures] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import domainaug as da  # noqa: E402
import domainaug.io as dio  # noqa: E402
from domainaug import data  # noqa: E402
from domainaug import remote_sensing as rs  # noqa: E402
from domainaug.core.transform import IntensityTransform, SpatialTransform, Transform  # noqa: E402
from domainaug.testing import declared_cases, library_transforms  # noqa: E402

#: Ops whose meaning needs a CT (Hounsfield units); shown on the T1 with a note.
CT_SPECIFIC = {"CTWindow"}
DRAWS = 3


def sections(doc: str) -> dict[str, str]:
    """A Google-style docstring split into its summary (key ``""``) and its titled sections."""
    out: dict[str, list[str]] = {"": []}
    key = ""
    for line in doc.splitlines():
        m = re.fullmatch(r"(Args|Arguments|Raises|Returns|Example|Examples|Note|Notes|Yields|Attributes):\s*", line)
        if m:
            key = m.group(1).rstrip("s") if m.group(1) in ("Examples", "Notes") else m.group(1)
            key = "Args" if key == "Arguments" else key
            out[key] = []
        else:
            out.setdefault(key, []).append(line)
    return {k: inspect.cleandoc("\n".join(v)) for k, v in out.items()}


def parse_args_section(text: str) -> dict[str, str]:
    """``name: text`` entries of an ``Args:`` section, continuation lines joined."""
    out: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        m = re.match(r"^(\*{0,2}\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if m and not line.startswith(" "):
            name = m.group(1).lstrip("*")
            out[name] = m.group(2)
        elif name is not None and line.strip():
            out[name] += " " + line.strip()
    return out


def volume_sample() -> da.Sample:
    sample = dio.load(data.path(data.T1), label=data.path(data.T1_LABELS))
    centre = sample.space.affine[:3, 3].tolist()
    spacing = [float(v) for v in torch.linalg.norm(torch.tensor(sample.space.affine[:3, :3]), dim=0)]
    mid = [c + s * (n - 1) / 2 for c, s, n in zip(centre, spacing, sample.space.shape)]
    points = torch.tensor([mid, [m + 10.0 for m in mid]], dtype=torch.float64)
    box = da.Boxes([[m - 12.0 for m in mid] + [m + 12.0 for m in mid]], labels=[1])
    return sample.replace(points={"landmarks": points}, boxes={"box": box})


def raster_sample() -> da.Sample:
    sample = rs.set_bands(dio.load(data.path(data.RGBN)), ["blue", "green", "red", "nir"], sensor="aerial-rgbn")
    image = sample["image"].double()                    # no labels are shipped: vegetation (NDVI > 0.2) as one
    ndvi = (image[3] - image[2]) / (image[3] + image[2]).clamp(min=1e-6)
    vegetation = ((ndvi > 0.2) & sample["valid"][0].bool()).to(torch.uint8)[None]
    sample = sample.with_layers(label=da.Layer(vegetation, da.Role.LABEL))
    x0, y0 = (float(v) for v in sample.space.affine[:2, 2])
    points = torch.tensor([[x0 + 300.0, y0 - 300.0]], dtype=torch.float64)
    box = da.Boxes([[x0 + 200.0, y0 - 400.0, x0 + 400.0, y0 - 200.0]], labels=[1])
    return sample.replace(points={"landmarks": points}, boxes={"box": box})


def instance(cls: type[Transform], case: Any, sample: da.Sample) -> tuple[Transform, str]:
    """The transform pictured on ``sample``: its contract case's random instance (a strong draw; many
    defaults change little or nothing, e.g. ``Affine()`` is the identity), else its defaults."""
    if case is not None:
        return case.random(sample), "contract case"
    return cls(), "defaults"


def defaults(cls: type[Transform]) -> Transform | None:
    """``cls()`` when every argument has a default, else ``None``."""
    try:
        return cls()
    except Exception:
        return None


def moved(before: da.Sample, after: da.Sample) -> list[str]:
    """The targets that differ between ``before`` and ``after`` (layers by name, points, boxes)."""
    out = []
    for name in after.layer_names():
        if name not in before.layer_names():
            out.append(f"adds layer `{name}`")
        else:
            a, b = before[name], after[name]
            if a.shape != b.shape or not torch.equal(a.to(b.dtype), b):
                out.append(f"`{name}` ({after.layer_info(name).role.name})")
    for name in before.layer_names():
        if name not in after.layer_names():
            out.append(f"drops layer `{name}`")
    for name, p in before.points.items():
        if name in after.points and not torch.allclose(p, after.points[name].to(p)):
            out.append("points")
    for name, bx in before.boxes.items():
        if name not in after.boxes or len(after.boxes[name]) != len(bx) or not torch.allclose(
                torch.as_tensor(bx.data), torch.as_tensor(after.boxes[name].data).to(torch.as_tensor(bx.data))):
            out.append("boxes")
    return out


def small_png(path: Path, width: int = 720) -> None:
    """Shrink a preview PNG for the site: ``width`` pixels wide, 256 colours (a tenth of the bytes)."""
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert("RGB")
        im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
        im.quantize(256).save(path, optimize=True)


def describe_yaml(t: Transform) -> str:
    return t.to_yaml().rstrip()


def render(name: str, cls: type[Transform], case: Any, samples: dict[str, da.Sample], out: Path,
           pictures: bool) -> str:
    doc = inspect.getdoc(cls) or ""
    parts = sections(doc)
    summary = parts.get("", "").split("\n\n")[0].replace("\n", " ")
    kinds = case.kinds if case is not None else ("volume", "raster-nodata")
    lines = [f"## {name}", "", f"`{cls.__module__}.{name}`: {summary}", ""]
    shown: dict[str, tuple[Transform, str]] = {}
    targets: set[str] = set()
    notes: list[str] = []
    for kind, sample in samples.items():
        wanted = "volume" in kinds if kind == "volume" else "raster-nodata" in kinds
        if not wanted:
            notes.append(f"not shown on the {kind}: its contract applies it to "
                         f"{', '.join(k for k in kinds)} only")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t, source = instance(cls, case, sample)
                draws = [t(sample, generator=da.generator_for(seed)) for seed in range(DRAWS)]
        except Exception as e:           # an op that refuses this sample says why; the page says it too
            notes.append(f"not shown on the {kind}: {type(e).__name__}: {str(e).splitlines()[0]}")
            continue
        shown[kind] = (t, source)
        for d in draws:
            targets.update(moved(sample, d))
        if pictures:
            from domainaug.preview import preview
            img = out / "img"
            if kind == "volume":
                title = f"{name} on the T1" + (" (no CT shipped: T1 values read as HU)" if name in CT_SPECIFIC else "")
                small_png(preview(sample, draws, img / f"{name}_volume.png", title=title))
                lines += [f"![{name} on the shipped T1](img/{name}_volume.png)", ""]
            else:
                small_png(preview(sample, draws, img / f"{name}_raster.png", title=f"{name}, natural colour",
                                  bands=["red", "green", "blue"]))
                small_png(preview(sample, draws, img / f"{name}_raster_nir.png",
                                  title=f"{name}, false colour (NIR, red, green)", bands=["nir", "red", "green"]))
                lines += [f"![{name} on the RGBN raster](img/{name}_raster.png)", "",
                          f"![{name} on the RGBN raster, false colour](img/{name}_raster_nir.png)", ""]
    if name in CT_SPECIFIC:
        notes.append("CT-specific: no CT is shipped, so the picture shows it on the T1 with its values read as HU")
    for n in notes:
        lines += [f"*{n}.*", ""]
    spatial = issubclass(cls, SpatialTransform)
    family = "spatial" if spatial else "intensity" if issubclass(cls, IntensityTransform) else "composite/other"
    first = next(iter(shown.values()), None)
    deterministic = first[0].deterministic if first else cls.deterministic
    lines += [f"- **Spatial:** {'yes' if spatial else 'no'} ({family})",
              f"- **Deterministic:** `{deterministic}`",
              f"- **Moved by 3 draws on the shipped data:** {', '.join(sorted(targets)) or 'nothing'}", ""]
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    documented = parse_args_section(parts.get("Args", ""))
    if params:
        lines += ["| argument | default | meaning (units, range) |", "|---|---|---|"]
        for p in params:
            default = "required" if p.default is p.empty else f"`{p.default!r}`"
            text = documented.get(p.name, "").replace("|", "\\|")
            lines.append(f"| `{p.name}` | {default.replace('|', chr(92) + '|')} | {text} |")
        lines.append("")
    base = defaults(cls)
    if base is not None:
        lines += ["YAML of the default configuration:", "", "```yaml", describe_yaml(base), "```", ""]
    else:
        lines += ["*No default configuration: some arguments are required.*", ""]
    for kind, (t, source) in shown.items():
        if base is None or t.to_dict() != base.to_dict():
            lines += [f"YAML of the pictured configuration on the {kind} ({source}):", "", "```yaml",
                      describe_yaml(t), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "gallery")
    parser.add_argument("--no-pictures", action="store_true", help="pages only (fast; the tests use it)")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    start = time.perf_counter()
    registry = library_transforms()
    cases = declared_cases(registry)
    names = [n for n in registry if args.only is None or n in args.only]
    samples = {"volume": volume_sample(), "raster": raster_sample()}
    args.out.mkdir(parents=True, exist_ok=True)
    body = [render(n, registry[n], cases.get(n), samples, args.out, not args.no_pictures) for n in names]
    families = {"spatial": [], "intensity": [], "composite/other": []}   # type: dict[str, list[str]]
    for n in names:
        cls = registry[n]
        key = "spatial" if issubclass(cls, SpatialTransform) else "intensity" if issubclass(
            cls, IntensityTransform) else "composite/other"
        families[key].append(f"[{n}](#{n.lower()})")
    index = ["# Transform gallery", "",
             f"Generated by `docs/gen_gallery.py` from `domainaug.Transform.registry`: {len(names)} of "
             f"{len(registry)} registered transforms. Each picture is the original (left) beside 3 draws "
             "(seeds 0, 1, 2) of its contract case's random instance (YAML below it); volumes show three "
             "mid-slices in RAS of the shipped T1 with its labels outlined in red, rasters the shipped 5 m "
             "RGBN crop (nodata grey) in natural and false colour, with a "
             "vegetation mask outlined (NDVI > 0.2 of the raster itself: no raster labels are shipped). "
             "One display stretch, the original's, serves every panel. The batch ops `MixUp`, `CutMix` and "
             "`LesionPaste` mix several samples and are not registered transforms (see the training and "
             "medical guides).", ""]
    for key, entries in families.items():
        index += [f"- **{key.capitalize()}**: {', '.join(entries)}"]
    index += ["", *body]
    (args.out / "index.md").write_text("\n".join(index) + "\n", encoding="utf-8")
    print(f"gallery: {len(names)} of {len(registry)} transforms in {time.perf_counter() - start:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
