"""Lightning: a callback that gives domainaug datasets and pipelines the training epoch.

Lightning calls ``set_epoch`` on samplers (``DistributedSampler``), not on datasets, so without this
callback an ``AugmentedDataset`` draws epoch 0's parameters at every epoch and its schedules
(curriculum) never move. ``DomainaugEpochs`` finds every ``AugmentedDataset`` behind the training
dataloaders (inside ``Subset``/``ConcatDataset`` too) and calls ``set_epoch(trainer.current_epoch)``
at the start of each training epoch, before Lightning creates that epoch's iterator, so the draws
equal a plain loop's ``dataset.set_epoch(epoch)`` at every epoch, for any ``num_workers``.

Persistent workers (``persistent_workers=True``) hold their own copy of the dataset for the whole
run; the dataset keeps its epoch in shared memory, so the value set in the main process is the one
they read. When a run resumes from a checkpoint, Lightning creates the first iterator (and its
workers prefetch) before any epoch hook; the callback then sets the resumed epoch and restarts that
iterator, so no prefetched item of the wrong epoch reaches the model.

Other objects with ``set_epoch`` (a ``Transform`` used for batch augmentation in
``on_after_batch_transfer``, a dataset Lightning does not see) are passed to the callback. A
``BatchAugment`` takes the epoch per call: ``self.augment(..., epoch=self.current_epoch)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..extras import require

require("lightning", "domainaug.training.lightning")

from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402 - after the named check
from torch.utils.data import ConcatDataset, DataLoader, Subset  # noqa: E402

from ..core.transform import Transform  # noqa: E402
from ..errors import ParameterError  # noqa: E402
from .dataset import AugmentedDataset  # noqa: E402

__all__ = ["DomainaugEpochs", "augmented_datasets"]


def augmented_datasets(loaders: Any) -> list[AugmentedDataset]:
    """The ``AugmentedDataset`` objects behind ``loaders``: a ``DataLoader``, a dataset, or a list,
    tuple or mapping of them (Lightning's ``trainer.train_dataloader``), looking through ``Subset``
    and ``ConcatDataset``; each once."""
    found: dict[int, AugmentedDataset] = {}

    def visit(obj: Any) -> None:
        if isinstance(obj, DataLoader):
            visit(obj.dataset)
        elif isinstance(obj, AugmentedDataset):
            found.setdefault(id(obj), obj)
        elif isinstance(obj, Subset):
            visit(obj.dataset)
        elif isinstance(obj, ConcatDataset):
            for d in obj.datasets:
                visit(d)
        elif isinstance(obj, Mapping):
            for v in obj.values():
                visit(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                visit(v)

    visit(loaders)
    return list(found.values())


class DomainaugEpochs(Callback):
    """Sets the training epoch on every ``AugmentedDataset`` of the training dataloaders, and on
    ``targets``, at the start of each training epoch.

    Args:
        targets: More objects whose ``set_epoch(epoch)`` to call: transforms (pipelines applied in
            the module), datasets Lightning does not see.

    Example::

        trainer = Trainer(max_epochs=20, callbacks=[DomainaugEpochs()])
        trainer.fit(module, DataLoader(AugmentedDataset(items, preset("brain-mri")), num_workers=4,
                                       persistent_workers=True, collate_fn=collate))
    """

    def __init__(self, *targets: AugmentedDataset | Transform) -> None:
        for i, t in enumerate(targets):
            if not callable(getattr(t, "set_epoch", None)):
                raise ParameterError(f"targets[{i}]", type(t).__name__, "an object with set_epoch (an AugmentedDataset "
                                     "or a Transform)")
        self.targets = list(targets)

    def _set(self, trainer: Trainer) -> bool:
        """Set ``trainer.current_epoch`` everywhere; whether a dataset's epoch changed."""
        epoch = int(trainer.current_epoch)
        changed = False
        for dataset in augmented_datasets(trainer.train_dataloader):
            changed |= dataset.epoch != epoch
            dataset.set_epoch(epoch)
        for t in self.targets:
            t.set_epoch(epoch)
        return changed

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # The first iterator of a run exists already (Lightning makes it before any epoch hook), and
        # its workers prefetch; on a resumed run its items are of the wrong epoch: start it again.
        if self._set(trainer):
            fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
            if fetcher is None:
                raise RuntimeError("DomainaugEpochs: the training epoch changed after Lightning made its data "
                                   "iterator, and this Lightning version has no fit_loop._data_fetcher to restart; "
                                   "call dataset.set_epoch(epoch) before trainer.fit")
            iter(fetcher)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._set(trainer)
