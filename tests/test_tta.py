"""Test-time augmentation: views replay, predictions map back through the inverse record."""

import numpy as np
import pytest
import torch

import domainaug as da
from domainaug.errors import ShapeError
from domainaug.testing import make_volume
from domainaug.training import TestTimeAugmentation

PIPELINE = da.Compose([da.Flip(axes=(0,), p=0.5), da.Affine(degrees=(-15, 15), translation=(-2, 2)),
                       da.Elastic(max_displacement=1.0)])


def one_hot_model(view):
    """An equivariant 'network': the one-hot of the view's own label map."""
    label = view["label"][0].long()
    return torch.nn.functional.one_hot(label, 8).movedim(-1, 0).float()


def test_equivariant_predictions_map_back_onto_the_input_labels():
    sample = make_volume(shape=(20, 22, 18))
    result = TestTimeAugmentation(PIPELINE, n=4, seed=1)(sample, one_hot_model)
    seen = result["count"][0] == 4
    mean = result["mean"]
    assert mean.shape == (8,) + sample.space.shape
    agree = (mean.argmax(0) == sample["label"][0].long())[seen].float().mean()
    assert agree > 0.9
    # probabilities stay probabilities where every view looked
    torch.testing.assert_close(mean.sum(0)[seen], torch.ones(int(seen.sum())), atol=1e-5, rtol=0)


def test_label_votes_never_invent_labels_and_agree_where_views_agree():
    sample = make_volume(shape=(20, 22, 18))
    tta = TestTimeAugmentation(PIPELINE, n=5, seed=2, kind="labels")
    result = tta(sample, lambda v: v["label"])
    assert set(result["vote"].unique().tolist()) <= set(sample["label"].unique().tolist())
    seen = result["count"][0] > 0
    assert (result["vote"] == sample["label"])[0][seen].float().mean() > 0.9
    assert float(result["agreement"][0][seen].mean()) > 0.9


def test_views_replay_from_their_records():
    sample = make_volume()
    tta = TestTimeAugmentation(PIPELINE, n=3, seed=5)
    result = tta(sample, one_hot_model)
    for i, records in enumerate(result["records"]):
        view = tta.view(sample.with_valid(), i)
        again = da.replay(sample.with_valid(), records)
        assert torch.equal(view["image"], again["image"])


def test_spread_is_zero_without_augmentation_and_positive_with_it():
    sample = make_volume()
    same = TestTimeAugmentation(da.Compose([]), n=3)(sample, one_hot_model)
    assert float(same["std"].max()) == 0.0
    noisy = TestTimeAugmentation(da.GaussianNoise(0.5), n=3)(sample, lambda v: v["image"])
    assert float(noisy["std"].mean()) > 0.1


def test_a_crop_view_covers_only_its_block():
    sample = make_volume(shape=(12, 12, 12))
    result = TestTimeAugmentation(da.Crop(6), n=1)(sample, lambda v: v["image"])
    assert int(result["count"].sum()) == 6 ** 3
    start = np.argwhere(result["count"][0].numpy())[0]
    block = tuple(slice(s, s + 6) for s in start)
    torch.testing.assert_close(result["mean"][(0,) + block], sample["image"][(0,) + block].float())


def test_bad_predictions_are_named():
    sample = make_volume()
    with pytest.raises(ShapeError, match="prediction has shape"):
        TestTimeAugmentation(PIPELINE, n=1)(sample, lambda v: torch.zeros(2, 3, 4))
    with pytest.raises(da.ParameterError, match="^prediction="):
        TestTimeAugmentation(PIPELINE, n=1, kind="labels")(sample, lambda v: v["image"])
    with pytest.raises(da.ParameterError, match="^n="):
        TestTimeAugmentation(PIPELINE, n=0)
