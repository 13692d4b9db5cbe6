# Flip (exact on the reference) interpolates a layer whose lattice is not symmetric about the reference centre.
import numpy as np, torch
from domainaug import Flip, Layer, Role, Sample, Space
from common import gen
t1s = Space.from_spacing((16, 16, 16), 1.0, origin=(0, 0, 0))
fls = Space.from_spacing((6, 6, 6), 2.0, origin=(0.3, 0.3, 0.3))
lab = torch.zeros((1, 6, 6, 6), dtype=torch.uint8); lab[0, 2, 2, 2] = 1
s = Sample(t1s, {"t1": Layer(torch.rand(1, 16, 16, 16)), "flair": Layer(torch.rand(1, 6, 6, 6)), "fl_lab": Layer(lab, Role.LABEL)},
           grids={"flair": fls, "fl_lab": fls})
o = Flip(axes=[0]).run(s, {"axes": [0]})
print("flair grid kept:", o.space_of("flair") == fls)
print("flair is a permutation of its source:", torch.equal(torch.sort(o["flair"].flatten())[0], torch.sort(s["flair"].flatten())[0]))
print("label voxels", int(o["fl_lab"].sum()), "at", torch.nonzero(o["fl_lab"][0]).tolist())
