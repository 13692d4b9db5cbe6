"""BatchAugment: a (B, C, *spatial) batch with per-sample params in one call."""

import pytest
import torch

import domainaug as da
from domainaug.testing import make_volume
from domainaug.training import BatchAugment

PIPELINE = da.Compose([da.Affine(degrees=(-15, 15), scales=(0.9, 1.1)), da.Elastic(), da.Gamma((0.7, 1.4)),
                       da.Crop((10, 12, 8))])


def test_elements_get_distinct_draws_and_the_output_stacks():
    sample = make_volume()
    images = torch.stack([sample["image"]] * 3)
    labels = torch.stack([sample["label"]] * 3)
    out = BatchAugment(PIPELINE, seed=1)(images, labels, space=sample.space, indices=[10, 11, 12])
    assert out["image"].shape == (3, 1, 10, 12, 8) and out["label"].dtype == sample["label"].dtype
    assert not torch.equal(out["image"][0], out["image"][1])
    assert len({str(r) for r in out["records"]}) == 3


def test_bad_batches_are_named():
    with pytest.raises(da.ShapeError, match="expected a"):
        BatchAugment(PIPELINE)(torch.zeros(3, 4, 5))
    with pytest.raises(da.ShapeError, match="label has shape"):
        BatchAugment(PIPELINE)(torch.zeros(2, 1, 4, 4, 4), torch.zeros(2, 1, 4, 4, 5, dtype=torch.uint8))
    with pytest.raises(da.ParameterError, match="^records="):
        BatchAugment(PIPELINE)(torch.zeros(2, 1, 4, 4, 4), records=[[]])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_batch_matches_the_cpu_batch():
    sample = make_volume(shape=(24, 28, 20))
    images = torch.stack([sample["image"]] * 4)
    labels = torch.stack([sample["label"]] * 4)
    augment = BatchAugment(da.Compose(PIPELINE.transforms[:3]), seed=3)
    cpu = augment(images, labels, space=sample.space)
    gpu = augment(images.cuda(), labels.cuda(), space=sample.space)
    assert gpu["image"].device.type == "cuda"
    torch.testing.assert_close(gpu["image"].cpu(), cpu["image"], atol=1e-3, rtol=1e-3)
    assert (gpu["label"].cpu() == cpu["label"]).float().mean() > 0.999
