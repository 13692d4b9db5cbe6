# Random crops give the 20 m layer 32 or 33 rows depending on the start's parity: collate fails.
from common import s2, gen
from domainaug import Crop
from domainaug.training import collate
a = Crop(32).run(s2(), {"start": [0, 0]})
b = Crop(32).run(s2(), {"start": [1, 0]})
print("b20 shapes", a.space_of("b20").shape, b.space_of("b20").shape)
try:
    collate([a, b]); print("collated")
except Exception as e:
    print(type(e).__name__, str(e)[:200])
