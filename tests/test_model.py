"""Construction of spaces and samples: validation errors name what is wrong."""

import numpy as np
import pytest
import torch

import domainaug as da
from domainaug.core.random import generator_for


def test_shapes_and_defaults():
    s = da.Sample.from_numpy(np.zeros((5, 6, 7), np.float32), label=np.zeros((5, 6, 7), np.uint8), spacing=(1, 2, 3))
    assert s["image"].shape == (1, 5, 6, 7) and s["label"].dtype == torch.uint8
    assert np.allclose(s.space.spacing, [1, 2, 3])
    r = da.Sample.from_numpy(np.zeros((3, 8, 9), np.float32), spacing=(10.0, 10.0), crs="EPSG:32633")
    assert r.space.shape == (8, 9) and r["image"].shape == (3, 8, 9)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(image=np.zeros(5)), da.ShapeError, "1 dimensions"),
    (dict(image=np.zeros((2, 3, 4, 5, 6))), da.ShapeError, "5 dimensions"),
    (dict(image=np.zeros((4, 4)), label=np.zeros((5, 4), np.uint8)), da.SpaceMismatchError, "label has shape"),
    (dict(image=np.zeros((4, 4)), label=-np.ones((4, 4), np.int16)), da.ParameterError, "^label=.*>= 0"),
    (dict(image=np.zeros((4, 4)), label=np.full((4, 4), 0.5, np.float32)), da.ParameterError, "^label=.*non-integer"),
    (dict(image=np.full((4, 4), np.nan)), da.ParameterError, "^image=.*NaN"),
    (dict(image=np.zeros((4, 4)), affine=np.eye(4)), da.ShapeError, "does not fit a 3D space"),
    (dict(image=np.zeros((4, 4)), affine=np.full((3, 3), np.inf)), da.ParameterError, "^affine=.*finite"),
    (dict(image=np.zeros((4, 4)), affine=np.eye(2)), da.ShapeError, "1D space"),
    (dict(image=np.zeros((4, 4)), spacing=(1, -1)), da.ParameterError, "^spacing="),
    (dict(image=np.zeros((4, 4)), spacing=(1, 1), affine=np.eye(3)), da.ParameterError, "^spacing="),
])
def test_bad_input_is_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        da.Sample.from_numpy(**kwargs)


def test_nan_allowed_only_where_invalid():
    img = np.ones((4, 4), np.float32)
    img[0, 0] = np.nan
    valid = np.ones((4, 4), bool)
    valid[0, 0] = False
    s = da.Sample.from_numpy(img, valid=valid, fill=-1.0)
    assert s["image"][0, 0, 0] == -1.0


def test_layer_grid_must_match_space():
    space = da.Space.from_spacing((4, 5))
    with pytest.raises(da.SpaceMismatchError, match="layer 'image'"):
        da.Sample(space, {"image": da.Layer(torch.zeros(1, 4, 6))})
    with pytest.raises(da.ParameterError, match="at most one VALID"):
        da.Sample(space, {"a": da.Layer(torch.ones(1, 4, 5, dtype=torch.bool), da.Role.VALID),
                          "b": da.Layer(torch.ones(1, 4, 5, dtype=torch.bool), da.Role.VALID)})
    with pytest.raises(da.ParameterError, match="interpolation"):
        da.Layer(torch.zeros(1, 4, 5, dtype=torch.uint8), da.Role.LABEL, interpolation="cubic")


def test_generators_are_independent_and_reproducible():
    draws = {(e, i): torch.rand(4, generator=generator_for(0, e, i)) for e in range(3) for i in range(50)}
    assert torch.equal(draws[(1, 7)], torch.rand(4, generator=generator_for(0, 1, 7)))
    values = torch.stack(list(draws.values()))
    assert len(torch.unique(values, dim=0)) == len(draws)


def test_pipeline_yaml_round_trip():
    t = da.Compose([da.Affine(degrees=(-10, 10)), da.OneOf([da.Flip(axes=(0,)), da.Rot90()]), da.Gamma(p=0.5)])
    text = t.to_yaml()
    again = da.Compose.from_yaml(text)
    assert again.to_dict() == t.to_dict()
    with pytest.raises(da.ParameterError, match="^transform="):
        da.transform_from_dict({"transform": "NoSuchOp", "config": {}})


def test_skipped_transform_is_recorded_and_replays():
    s = da.Sample.from_numpy(np.random.default_rng(0).random((6, 7)).astype(np.float32))
    t = da.Affine(degrees=(-30, 30), p=0.5)
    outs = [t(s, torch.Generator().manual_seed(k)) for k in range(12)]
    skipped = [o for o in outs if o.history[-1].params == {"applied": False}]
    assert skipped and len(skipped) < len(outs)
    assert torch.equal(skipped[0]["image"], s["image"])
    again = da.replay(s, skipped[0].history)
    assert torch.equal(again["image"], s["image"])


def test_whole_number_float_labels_become_integers_and_rasters_are_recognised_by_channels():
    s = da.Sample.from_numpy(np.zeros((4, 5)), label=np.full((4, 5), 3.0))
    assert s["label"].dtype == torch.uint8
    r = da.Sample.from_numpy(np.zeros((4, 16, 16)), channels=["B2", "B3", "B4", "B8"])
    assert r.space.ndim == 2 and r["image"].shape == (4, 16, 16)


@pytest.mark.parametrize("call, name", [
    (lambda: da.Compose(da.Affine()), "transforms"),
    (lambda: da.SomeOf([da.Affine()], n=1.0), "n"),
    (lambda: da.OneOf([da.Affine()], weights=3), "weights"),
    (lambda: da.Space.from_spacing((4, 5, 6), (1, 2)), "spacing"),
    (lambda: da.Space.from_spacing((4, 5, 6), 1.0, origin=(0, 0)), "origin"),
    (lambda: da.Crop(4).apply(da.Sample.from_numpy(np.zeros((8, 8))), {"start": [6, 0]}), r"params\['start'\]"),
])
def test_wrong_argument_types_raise_parameter_errors(call, name):
    with pytest.raises(da.ParameterError, match=rf"^{name}="):
        call()
