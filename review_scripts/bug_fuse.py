# A value stage fused into a pending "exact permutation" after ResampleToMatch: the statistics of
# flair come from its 3 mm source grid (and the VALID of the reference grid is applied to it).
import torch
from common import vol, gen
from domainaug import Compose, ResampleToMatch, BrightnessContrast, Flip
bc = BrightnessContrast(brightness=0.3, contrast=0.5, layers=["flair"])
s = vol()
params = {"brightness": 0.3, "contrast": 0.5}
fused = Compose([ResampleToMatch("t1"), Flip(axes=[0]), bc])(s, gen(0))
step = bc.run(Compose([ResampleToMatch("t1"), Flip(axes=[0])])(s, gen(0)), fused.history[-1].params["children"][2])
print("fused vs sequential max diff:", float((fused["flair"] - step["flair"]).abs().max()))
try:
    Compose([ResampleToMatch("t1"), bc])(vol(valid=True), gen(0))
    print("with a reference VALID: no error")
except Exception as e:
    print("with a reference VALID:", type(e).__name__, str(e)[:200])
