# One sample has a VALID on the 20 m grid only; the other none. Collate gives the second an
# all-False b20_valid and marks it present.
import torch
from common import s2
from domainaug import Layer, Role, Sample
from domainaug.training import collate
s = s2()
v = torch.ones((1, 32, 32), dtype=torch.bool); v[0, 0, 0] = False
a = Sample(s.space, {**s.layers, "b20_valid": Layer(v, Role.VALID)}, grids={**s.grids, "b20_valid": s.space_of("b20")})
b = s2()
batch = collate([a, b])
print("b20_valid of sample 2: any true =", bool(batch["b20_valid"][1].any()), "present =", bool(batch["present"]["b20_valid"][1]))
