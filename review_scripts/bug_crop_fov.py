# A crop of the reference that reaches past a thick slab's FOV: the slab's covering grid gets fill
# voxels that nothing marks invalid; a later ResampleToMatch counts them as data (fused != stepwise).
import numpy as np, torch
from domainaug import Compose, Crop, GaussianBlur, Layer, ResampleToMatch, Sample, Space
from common import gen
t1s = Space.from_spacing((32, 32, 32), 1.0, origin=(-15.5, -15.5, -15.5))
slab = Space.from_spacing((16, 16, 4), 2.0, origin=(-15.0, -15.0, -3.0))   # z in [-4, 4]
s = Sample(t1s, {"t1": Layer(torch.rand(1, 32, 32, 32)), "flair": Layer(torch.full((1, 16, 16, 4), 5.0), fill=-1.0)},
           grids={"flair": slab})
crop = {"start": [0, 0, 8]}                 # z centres -7.5 .. 7.5
c = Crop((32, 32, 16)).run(s, crop)
print("cropped flair grid", c.space_of("flair").shape, "layers", c.layer_names(), "values", torch.unique(c["flair"]).tolist())
fused = Compose([Crop((32, 32, 16)), ResampleToMatch("t1")]).run(s, {"children": [crop, {"shape": [32, 32, 16], "affine": c.space.affine.tolist()}]})
step = ResampleToMatch("t1")(c, gen(0))
print("fused: valid layer", fused.valid_name, "invalid voxels", int((~fused["valid"]).sum()) if fused.valid_name else 0)
print("stepwise: valid layer", step.valid_name, "flair values", torch.unique(step["flair"]).tolist()[:6])
