"""Lightning: DomainaugEpochs gives AugmentedDataset the trainer's epoch, with persistent workers too."""

import importlib
import sys

import pytest
import torch
from torch.utils.data import DataLoader

import domainaug as da
from domainaug.errors import MissingDependencyError
from domainaug.testing import make_volume
from domainaug.training import AugmentedDataset, collate

lightning = pytest.importorskip("lightning")
from domainaug.training.lightning import DomainaugEpochs, augmented_datasets  # noqa: E402

N, BATCH = 6, 2


def pipeline():
    # epoch 0 never flips, epoch 1 always: the schedule must reach the workers' pipeline copies
    return da.Compose([da.Affine(degrees=(-20, 20)), da.Flip(axes=(0,), p=da.Schedule.step([0.0, 1.0], [1])),
                       da.Gamma((0.7, 1.4))])


def dataset():
    return AugmentedDataset([make_volume(seed=i) for i in range(N)], pipeline(), seed=7)


class Recorder(lightning.pytorch.LightningModule):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen = {}

    def training_step(self, batch, batch_idx):
        self.seen.setdefault(self.current_epoch, []).append(
            (batch["image"].clone(), [r[0]["params"]["children"][1].get("applied", True) for r in batch["records"]]))
        return (self.weight * batch["image"].mean()) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def plain_loop(epochs):
    ds = dataset()
    out = {}
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        out[epoch] = [b["image"] for b in DataLoader(ds, batch_size=BATCH, collate_fn=collate)]
    return out


def fit(module, loader, epochs, ckpt_path=None, callbacks=(), **kwargs):
    trainer = lightning.pytorch.Trainer(accelerator="cpu", max_epochs=epochs, logger=False,
                                        enable_checkpointing=False, enable_progress_bar=False,
                                        enable_model_summary=False, callbacks=[DomainaugEpochs(), *callbacks],
                                        **kwargs)
    trainer.fit(module, loader, ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("workers", [0, 2])
def test_two_epochs_draw_as_a_plain_loop_with_persistent_workers(workers):
    torch.set_num_threads(1)
    extra = {"persistent_workers": True, "multiprocessing_context": "fork"} if workers else {}
    loader = DataLoader(dataset(), batch_size=BATCH, collate_fn=collate, num_workers=workers, **extra)
    module = Recorder()
    fit(module, loader, 2)
    expected = plain_loop(2)
    assert sorted(module.seen) == [0, 1]
    for epoch in (0, 1):
        got = [image for image, _ in module.seen[epoch]]
        assert len(got) == N // BATCH
        for a, b in zip(got, expected[epoch]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        flips = [f for _, applied in module.seen[epoch] for f in applied]
        assert flips == [epoch == 1] * N                     # the schedule's value at that epoch, in every worker
    assert not any(torch.equal(a, b) for (a, _), (b, _) in zip(module.seen[0], module.seen[1]))


def test_a_resumed_run_draws_the_resumed_epoch_from_its_first_batch(tmp_path):
    torch.set_num_threads(1)
    ds = dataset()
    loader = DataLoader(ds, batch_size=BATCH, collate_fn=collate, num_workers=2, persistent_workers=True,
                        multiprocessing_context="fork")
    first = lightning.pytorch.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                                      enable_progress_bar=False, enable_model_summary=False,
                                      callbacks=[DomainaugEpochs()])
    first.fit(Recorder(), loader)
    first.save_checkpoint(tmp_path / "e1.ckpt")
    ds.set_epoch(0)                            # a new process would start at 0: the callback must move it
    module = Recorder()
    fit(module, DataLoader(ds, batch_size=BATCH, collate_fn=collate, num_workers=2, persistent_workers=True,
                           multiprocessing_context="fork"), 2, ckpt_path=tmp_path / "e1.ckpt")
    assert sorted(module.seen) == [1]
    for (a, _), b in zip(module.seen[1], plain_loop(2)[1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_targets_and_wrapped_datasets():
    ds, other = dataset(), pipeline()
    found = augmented_datasets({"a": DataLoader(torch.utils.data.Subset(ds, [0, 1])),
                                "b": [torch.utils.data.ConcatDataset([ds, dataset()])]})
    assert len(found) == 2 and found[0] is ds
    with pytest.raises(da.ParameterError, match="targets"):
        DomainaugEpochs(object())
    DomainaugEpochs(other).targets[0].set_epoch(1)
    assert other.transforms[1].p == 1.0


def test_the_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.delitem(sys.modules, "domainaug.training.lightning")
    with pytest.raises(MissingDependencyError, match=r"pip install 'domainaug\[lightning\]'"):
        importlib.import_module("domainaug.training.lightning")
