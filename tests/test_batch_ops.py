"""Intensity ops with a ``transform_batch`` take the vectorised path in ``BatchAugment`` (their
per-element ``transform_layer`` is never called) and give each element's result alone, bit for bit,
for elements of different data and different draws."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from domainaug.core.random import generator_for
from domainaug.core.transform import IntensityTransform
from domainaug.intensity import GaussianBlur, GaussianNoise, NormalizeIntensity, RescaleIntensity, SaltPepper
from domainaug.medical.artefacts import HistogramShift
from domainaug.medical.contrast import IntensityScale
from domainaug.medical.physics import BiasField, CTWindow, RicianNoise
from domainaug.remote_sensing.spectral import BandDropout, Haze
from domainaug.testing import assert_samples_equal, make_raster, make_volume
from domainaug.training.batch import BatchAugment

SAMPLES = {
    "volume": lambda i: make_volume(seed=i),
    "volume-valid": lambda i: make_volume(seed=i, with_valid=True),
    "raster-valid": lambda i: make_raster(seed=i),
    "volume-int16": lambda i: make_volume(seed=i, with_valid=True, dtype=np.int16),
}

OPS = {
    "GaussianNoise": lambda: GaussianNoise((0.05, 0.2)),
    "GaussianNoise-absolute": lambda: GaussianNoise((1.0, 5.0), relative=False),
    "BiasField": lambda: BiasField((-0.5, 0.5)),
    "BiasField-order1": lambda: BiasField((-0.5, 0.5), order=1),
    "RicianNoise": lambda: RicianNoise((0.05, 0.2)),
    "RicianNoise-absolute": lambda: RicianNoise((1.0, 5.0), relative=False),
    "NormalizeIntensity": lambda: NormalizeIntensity(),
    "NormalizeIntensity-nonzero": lambda: NormalizeIntensity(nonzero=True),
    "NormalizeIntensity-pooled-nonzero": lambda: NormalizeIntensity(nonzero=True, channel_wise=False),
    "NormalizeIntensity-mask": lambda: NormalizeIntensity(mask="label"),
    "RescaleIntensity": lambda: RescaleIntensity(),
    "RescaleIntensity-percentiles": lambda: RescaleIntensity(percentiles=(2, 98)),
    "RescaleIntensity-noclip": lambda: RescaleIntensity(percentiles=(2, 98), clip=False),
    "RescaleIntensity-pooled": lambda: RescaleIntensity(percentiles=(1, 99), channel_wise=False, mask="label"),
    "GaussianBlur": lambda: GaussianBlur((0.5, 2.0)),
    "GaussianBlur-fixed": lambda: GaussianBlur(1.5),
    "Haze": lambda: Haze(strength=(0.05, 0.2)),
    "Haze-scaled": lambda: Haze(strength=(0.05, 0.2), reflectance_scale=10000.0),
    "BandDropout": lambda: BandDropout(max_bands=3),
    "BandDropout-mean": lambda: BandDropout(max_bands=2, value="mean"),
    "IntensityScale": lambda: IntensityScale((0.8, 1.2), (-0.1, 0.1)),
    "IntensityScale-raw": lambda: IntensityScale((0.8, 1.2), (-5.0, 5.0), units="raw"),
    "HistogramShift": lambda: HistogramShift((4, 12)),
    "CTWindow": lambda: CTWindow("brain", level_shift=(100.0, 200.0), width_scale=(0.5, 2.0)),
    "CTWindow-hu": lambda: CTWindow("brain", level_shift=(100.0, 200.0), width_scale=(0.5, 2.0), rescale=False),
    "SaltPepper": lambda: SaltPepper((0.05, 0.2), salt=(0.2, 0.8)),
}


def _owner(cls: type, attribute: str) -> type:
    return next(k for k in cls.__mro__ if attribute in vars(k))


def _elements(kind: str) -> list:
    elements = [SAMPLES[kind](i) for i in range(3)]
    if kind == "volume":             # zeros for the ``nonzero`` statistics to skip
        one = elements[1]
        elements[1] = one.with_layers(image=replace(one.layer_info("image"), data=torch.where(
            one["label"] > 0, one["image"], torch.zeros(()))))
    # the layers as slices of one buffer per layer, as in a batch (on the CPU, elements in buffers of
    # their own run alone: copying them together would cost a pass)
    names = elements[0].layer_names()
    batch = {n: torch.stack([e[n] for e in elements]) for n in names}
    return [e.with_layers(**{n: replace(e.layer_info(n), data=batch[n][b]) for n in names})
            for b, e in enumerate(elements)]


RASTER_ONLY = ("Haze", "BandDropout")           # band names: rasters


# raster ops need band names; integer HU volumes are for CTWindow only
COMBOS = [(n, k) for n in sorted(OPS) for k in sorted(SAMPLES)
          if (k.startswith("raster") or not n.startswith(RASTER_ONLY))
          and (k != "volume-int16" or n.startswith("CTWindow"))]


@pytest.mark.parametrize("name, kind", COMBOS)
def test_batched_op_takes_the_vectorised_path_and_equals_each_alone(name, kind, monkeypatch):
    op = OPS[name]()
    elements = _elements(kind)
    alone = [op(s, generator_for(5, 0, i)) for i, s in enumerate(elements)]
    if not op.deterministic and not name.endswith("-fixed"):    # draws that differ: per-element params exercised
        assert len({repr(one.history[-1].params) for one in alone}) >= 2
    calls = []
    batch = _owner(type(op), "transform_batch")
    assert batch is not IntensityTransform
    original = vars(batch)["transform_batch"]

    def refuse(*args, **kwargs):
        raise AssertionError(f"{name}: transform_layer called in a batch")

    def count(self, data, *args, **kwargs):
        calls.append(tuple(data.shape))
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(_owner(type(op), "transform_layer"), "transform_layer", refuse)
    monkeypatch.setattr(batch, "transform_batch", count)
    outs = BatchAugment(op, seed=5).augment(elements, indices=[0, 1, 2])
    assert calls and all(shape[0] == 3 for shape in calls)
    for one, out in zip(alone, outs):
        assert_samples_equal(out, one)
        assert torch.equal(out["image"], one["image"])
        assert [r.to_dict() for r in out.history] == [r.to_dict() for r in one.history]
