# Subject A has nodata in FLAIR only, subject B in T1 only. After ResampleToMatch("t1") both are on
# one grid, but A's VALID is named "flair_valid" and B's "valid": collate gives each an all-False
# mask for the other name (present=True), i.e. every voxel of both subjects is marked invalid somewhere.
import torch
from common import vol, gen
from domainaug import Layer, Role, Sample, ResampleToMatch
from domainaug.training import collate
s = vol()
L, g = s.layers, s.space_of("flair")
vf = torch.ones((1, 10, 10, 10), dtype=torch.bool); vf[0, 5, 5, 5] = False
vt = torch.ones((1, 16, 16, 16), dtype=torch.bool); vt[0, 0, 0, 0] = False
A = Sample(s.space, {"t1": L["t1"], "flair": L["flair"], "flair_valid": Layer(vf, Role.VALID)}, grids={"flair": g, "flair_valid": g})
B = Sample(s.space, {"t1": L["t1"], "flair": L["flair"], "valid": Layer(vt, Role.VALID)}, grids={"flair": g})
a, b = ResampleToMatch("t1")(A, gen(0)), ResampleToMatch("t1")(B, gen(0))
print("A valid:", a.layer_names(Role.VALID), "grids", a.grids, "| B valid:", b.layer_names(Role.VALID))
batch = collate([a, b])
for k in ("valid", "flair_valid"):
    if k in batch:
        print(k, "true fraction per sample", [float(batch[k][i].float().mean()) for i in range(2)], "present", batch["present"][k].tolist())
