import numpy as np, torch
import domainaug as _d, sys as _s; print("[domainaug from", _d.__file__.rsplit("/",2)[0] + "]", file=_s.stderr)
from domainaug import Layer, Role, Sample, Space

def gen(s=0):
    return torch.Generator().manual_seed(s)

def vol(valid=False, seed=0):
    """t1 on 1 mm 16^3 (reference); flair on a 3 mm grid with a larger FOV."""
    t1s = Space.from_spacing((16, 16, 16), 1.0, origin=(0, 0, 0))
    fls = Space.from_spacing((10, 10, 10), 3.0, origin=(-6, -6, -6))
    r = np.random.default_rng(seed)
    t1 = torch.from_numpy(r.uniform(0, 1, (1, 16, 16, 16)).astype(np.float32))
    fl = torch.from_numpy(r.uniform(0, 100, (1, 10, 10, 10)).astype(np.float32))
    layers = {"t1": Layer(t1), "flair": Layer(fl)}
    if valid:
        layers["valid"] = Layer(torch.ones((1, 16, 16, 16), dtype=torch.bool), Role.VALID)
    return Sample(t1s, layers, grids={"flair": fls})

def s2(h=64, w=64):
    x0, y0 = 500000.0, 4200000.0
    s10 = Space((h, w), np.array([[0.0, 10.0, x0 + 5], [-10.0, 0.0, y0 - 5], [0, 0, 1]]), "EPSG:32633")
    s20 = Space((h // 2, w // 2), np.array([[0.0, 20.0, x0 + 10], [-20.0, 0.0, y0 - 10], [0, 0, 1]]), "EPSG:32633")
    r = np.random.default_rng(0)
    return Sample(s10, {"b10": Layer(torch.from_numpy(r.uniform(0, 1, (4, h, w)).astype(np.float32)), channels=("B02", "B03", "B04", "B08")),
                        "b20": Layer(torch.from_numpy(r.uniform(0, 1, (2, h // 2, w // 2)).astype(np.float32)), channels=("B05", "B11"))},
                  grids={"b20": s20})
