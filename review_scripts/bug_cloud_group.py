# Band group (10 m "image" + 20 m "image_20"); ResampleToMatch first, as CloudShadow's refusal says;
# then CloudShadow(layer="image") clouds the 10 m bands only: half the bands of one acquisition.
import numpy as np, torch
from common import s2, gen
from domainaug import Compose, Layer, ResampleToMatch, Sample
from domainaug.remote_sensing import CloudShadow
s = s2()
L = s.layers
s = Sample(s.space, {"image": L["b10"], "image_20": L["b20"]}, grids={"image_20": s.space_of("b20")},
           meta={"band_groups": {"image": ["image", "image_20"]}, "sensor": "sentinel2"})
r = ResampleToMatch("image")(s, gen(0))
o = CloudShadow(coverage=0.5, shadow_shift=0.0)(r, gen(1))
m = o["occlusion"][0] == 1
print("cloud pixels", int(m.sum()))
for n in ("image", "image_20"):
    print(n, "changed under clouds:", float((o[n] - r[n])[:, m].abs().mean()))
