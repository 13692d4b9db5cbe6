# After ResampleToMatch merges two VALID layers, which name survives depends on layer order.
import torch
from common import vol, gen
from domainaug import Layer, Role, Sample, ResampleToMatch
s = vol()
v1 = torch.ones((1, 16, 16, 16), dtype=torch.bool); v1[0, 0, 0, 0] = False
v2 = torch.ones((1, 10, 10, 10), dtype=torch.bool); v2[0, 5, 5, 5] = False
L = s.layers
for order in (["t1", "valid", "flair", "flair_valid"], ["flair", "flair_valid", "t1", "valid"]):
    d = {"t1": L["t1"], "flair": L["flair"], "valid": Layer(v1, Role.VALID), "flair_valid": Layer(v2, Role.VALID)}
    x = Sample(s.space, {k: d[k] for k in order}, grids={"flair": s.space_of("flair"), "flair_valid": s.space_of("flair")})
    o = ResampleToMatch("t1")(x, gen(0))
    print(order, "->", o.layer_names(Role.VALID))
