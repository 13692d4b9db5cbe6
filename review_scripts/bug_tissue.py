# TissueContrast: label on the reference grid, target layer on its own grid.
import torch
from common import vol, gen
from domainaug import Layer, Role, Sample
from domainaug.medical import TissueContrast
s = vol()
lab = (s["t1"] > 0.5).to(torch.uint8)
s = Sample(s.space, {**s.layers, "label": Layer(lab, Role.LABEL)}, grids=s.grids)
for layers in (["t1", "flair"], ["flair"]):
    try:
        TissueContrast(layers=layers)(s, gen(0)); print(layers, "ok")
    except Exception as e:
        print(layers, type(e).__name__, str(e)[:200])
