"""The batched resampler: the torch path for a batch against the numba path per element, and a batch
element against the same element alone."""

from dataclasses import replace

import numpy as np
import pytest
import torch

import domainaug as da
from domainaug.core.kernels import resample as rs
from domainaug.core.kernels import warp_torch
from domainaug.core.kernels.spec import LayerSpec
from domainaug.testing import make_raster, make_volume

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731

AFFINE = da.Affine(degrees=(-20, 20), scales=(0.9, 1.1), shear=(-0.1, 0.1), translation=(-2, 2))
ELASTIC = da.Compose([AFFINE, da.Elastic(max_displacement=2.0)])
MAKERS = {"volume": lambda k: make_volume(seed=k), "volume-valid": lambda k: make_volume(seed=k, with_valid=True),
          "raster": lambda k: make_raster(seed=k), "raster-wide": lambda k: make_raster(shape=(20, 300), seed=k)}


def batch(kind: str, t: da.Transform, size: int = 3, extra: bool = True):
    """``size`` samples of one shape (their own data and grids), each with its own draw of ``t``:
    per-element specs, the batch specs (B, C, ...) and the maps. ``extra`` adds cubic and nearest
    copies of the image and an argmax copy of the label."""
    samples = [MAKERS[kind](k) for k in range(size)]
    pendings = [t.step(s, G(10 + k), lazy=True)[0].pending for k, s in enumerate(samples)]
    per = []
    for s in samples:
        specs = [s.layer_info(n).spec() for n in s.layer_names()]
        if extra:
            specs += [replace(specs[0], mode="cubic"), replace(specs[0], mode="nearest"),
                      replace(specs[1], mode="argmax")]
        per.append(specs)
    stacked = [replace(sp, data=torch.stack([p[i].data for p in per])) for i, sp in enumerate(per[0])]
    return per, stacked, pendings


def span(spec: LayerSpec) -> float:
    data = spec.data.double()[spec.data != spec.fill]
    return float(data.max() - data.min())


@pytest.mark.parametrize("kind", list(MAKERS))
@pytest.mark.parametrize("t", [AFFINE, ELASTIC], ids=["affine", "affine+elastic"])
def test_batched_torch_path_matches_numba_per_element(kind, t):
    per, stacked, pendings = batch(kind, t)
    affines = [next(s for s in p.stages if isinstance(s, np.ndarray)).tobytes() for p in pendings]
    assert len(set(affines)) == len(pendings)                                 # each element its own affine
    outs = rs.resample_layers_batch(stacked, pendings, backend="torch")
    for b, (specs, pending) in enumerate(zip(per, pendings)):
        ref = rs.resample_layers(specs, pending, backend="numba")
        for spec, out, r in zip(specs, outs, ref):
            got = out[b]
            assert got.dtype == r.dtype and got.shape == r.shape
            if spec.kind == "intensity":
                # float32 coordinates and weights: documented tolerance 1e-4 of the value range
                torch.testing.assert_close(got.double(), r.double(), atol=1e-4 * span(spec), rtol=0)
            else:
                # labels and VALID: equal but where float32 rounding moves a point across a tie
                # (nearest: a fraction at 1/2; argmax: equal scores; VALID: a weight of exactly 1/2)
                assert (got != r).double().mean() <= 1e-4, (spec.kind, spec.mode)


@pytest.mark.parametrize("kind", ["volume-valid", "raster"])
def test_an_element_of_a_batch_equals_it_alone_bit_for_bit(kind):
    per, stacked, pendings = batch(kind, ELASTIC, size=4)
    outs = rs.resample_layers_batch(stacked, pendings, backend="torch")
    for b in (0, 2, 3):
        alone = rs.resample_layers(per[b], pendings[b], backend="torch")
        for out, a in zip(outs, alone):
            assert torch.equal(out[b], a)
    # the slabs (chunk size) do not change a bit either
    small = warp_torch.resample_torch_batch(stacked, pendings, chunk_voxels=97)
    for out, s in zip(outs, small):
        assert torch.equal(out, s)


def test_a_batch_mixing_affine_and_elastic_maps_is_grouped_and_exact_per_element():
    samples = [make_volume(seed=k, with_valid=True) for k in range(3)]
    ts = [AFFINE, ELASTIC, da.Compose([da.Elastic(max_displacement=2.0), AFFINE])]     # three structures
    pendings = [t.step(s, G(k), lazy=True)[0].pending for k, (t, s) in enumerate(zip(ts, samples))]
    assert len({warp_torch.group_key(p) for p in pendings}) == 3
    specs = [[s.layer_info(n).spec() for n in s.layer_names()] for s in samples]
    stacked = [replace(sp, data=torch.stack([p[i].data for p in specs])) for i, sp in enumerate(specs[0])]
    outs = rs.resample_layers_batch(stacked, pendings, backend="torch")
    for b in range(3):
        alone = rs.resample_layers(specs[b], pendings[b], backend="torch")
        ref = rs.resample_layers(specs[b], pendings[b], backend="numba")
        for spec, out, a, r in zip(specs[b], outs, alone, ref):
            assert torch.equal(out[b], a)
            if spec.kind == "intensity":
                torch.testing.assert_close(a.double(), r.double(), atol=1e-4 * span(spec), rtol=0)


def test_cpu_data_without_a_backend_takes_each_elements_own_path_bit_for_bit():
    samples = [make_raster(seed=k) for k in range(3)]
    ts = [da.Flip(axes=(0,)), AFFINE, ELASTIC]                # an exact copy, numba, numba
    pendings = [t.step(s, G(k), lazy=True)[0].pending for k, (t, s) in enumerate(zip(ts, samples))]
    specs = [[s.layer_info(n).spec() for n in s.layer_names()] for s in samples]
    gain, bias = np.array([[1.1, 0.9, 1.0, 1.2]] * 3) * np.arange(1, 4)[:, None], np.full((3, 4), 5.0)
    specs = [[replace(sp, gain=gain[b], bias=bias[b]) if sp.kind == "intensity" else sp for sp in elem]
             for b, elem in enumerate(specs)]
    stacked = [replace(sp, data=torch.stack([p[i].data for p in specs]),
                       gain=gain if sp.kind == "intensity" else None, bias=bias if sp.kind == "intensity" else None)
               for i, sp in enumerate(specs[0])]
    before = rs.passes()
    outs = rs.resample_layers_batch(stacked, pendings)
    assert rs.passes() - before == 3                           # one pass per element, as per-element calls
    for b in range(3):
        for out, r in zip(outs, rs.resample_layers(specs[b], pendings[b])):
            assert torch.equal(out[b], r)


@pytest.mark.parametrize("t", [AFFINE, ELASTIC], ids=["affine", "affine+elastic"])
def test_value_stages_per_element_in_the_torch_batch(t):
    per, stacked, pendings = batch("raster", t, extra=False)
    gain = np.array([[0.8, 1.0, 1.1, 1.3], [1.2, 0.7, 1.0, 1.0], [1.0, 1.0, 0.5, 2.0]])
    bias = np.array([[3.0, 0.0, -2.0, 1.0], [0.0, 1.0, 0.0, 10.0], [-5.0, 0.0, 0.0, 0.0]])
    stacked = [replace(sp, gain=gain, bias=bias) if sp.kind == "intensity" else sp for sp in stacked]
    outs = rs.resample_layers_batch(stacked, pendings, backend="torch")
    plain = rs.resample_layers_batch([replace(sp, gain=None, bias=None) for sp in stacked], pendings, backend="torch")
    image, valid = outs[0], outs[2]
    assert not torch.equal(image, plain[0])
    expected = torch.where(valid, plain[0] * torch.tensor(gain, dtype=torch.float32)[:, :, None, None]
                           + torch.tensor(bias, dtype=torch.float32)[:, :, None, None], plain[0])
    assert torch.equal(image, expected) and (image[~valid.expand_as(image)] == -9999.0).all()
    for b in range(3):                                           # against numba with the element's stage
        specs = [replace(sp, gain=gain[b], bias=bias[b]) if sp.kind == "intensity" else sp for sp in per[b]]
        ref = rs.resample_layers(specs, pendings[b], backend="numba")
        torch.testing.assert_close(image[b].double(), ref[0].double(), atol=1e-4 * 2 * span(per[b][0]), rtol=0)
        alone = rs.resample_layers(specs, pendings[b], backend="torch")
        assert torch.equal(image[b], alone[0])


def test_half_voxel_shifts_resolve_ties_to_the_lower_tap_as_on_the_cpu():
    # a shift of half a voxel puts every point at a fraction of exactly 1/2: nearest labels and
    # intensities are all ties, which the CPU kernel resolves to the lower tap
    samples = [make_volume(seed=k, spacing=(1.0, 1.0, 1.0)) for k in range(2)]
    params = [{"degrees": [0.0] * 3, "scales": [1.0] * 3, "shear": [0.0] * 3, "translation": tr}
              for tr in ([0.5, -0.5, 1.5], [-0.5, 0.5, 0.0])]
    pendings = [da.Affine().lazy(s, p).pending for s, p in zip(samples, params)]
    specs = [[s.layer_info("label").spec(), replace(s.layer_info("image").spec(), mode="nearest")] for s in samples]
    stacked = [replace(sp, data=torch.stack([p[i].data for p in specs])) for i, sp in enumerate(specs[0])]
    outs = rs.resample_layers_batch(stacked, pendings, backend="torch")
    for b in range(2):
        for out, r in zip(outs, rs.resample_layers(specs[b], pendings[b], backend="numba")):
            assert torch.equal(out[b], r)


def test_float64_images_are_sampled_in_float64_in_the_batch():
    rng = np.random.default_rng(0)
    samples = [da.Sample.from_numpy(1e6 + rng.random((10, 12, 9)), spacing=(1.0, 1.0, 1.0), fill=0.0) for _ in range(2)]
    pendings = [ELASTIC.step(s, G(k), lazy=True)[0].pending for k, s in enumerate(samples)]
    spec = samples[0].layer_info("image").spec()
    out = rs.resample_layers_batch([replace(spec, data=torch.stack([s["image"] for s in samples]))], pendings,
                                   backend="torch")[0]
    assert out.dtype == torch.float64
    for b, s in enumerate(samples):
        ref = rs.resample_layers([s.layer_info("image").spec()], pendings[b], backend="numba")[0]
        torch.testing.assert_close(out[b], ref, atol=1e-7, rtol=0)


def test_a_batch_refuses_elements_of_other_shapes():
    a, b = make_volume(), make_volume(shape=(14, 16, 10))
    pendings = [AFFINE.step(s, G(), lazy=True)[0].pending for s in (a, b)]
    spec = a.layer_info("image").spec()
    with pytest.raises(ValueError, match="share their shapes"):
        warp_torch.resample_torch_batch([replace(spec, data=torch.stack([a["image"]] * 2))], pendings)
