"""Train a small CNN to classify land cover on patches of a real Landsat-7 scene, with the landsat7
preset through a PyTorch DataLoader (CPU, about a minute at the defaults).

    .venv/bin/python examples/train_classification.py
    .venv/bin/python examples/train_classification.py --epochs 1 --workers 0   # CI

Data: the Raleigh (NC) Landsat-7 scene and its 7-class land-cover map from ``../shared/data_real``
(GRASS sample data, CC BY-SA 3.0; not shipped). Patches are read lazily with
``remote_sensing.classification_patches``; a patch's class is the majority class of its labelled pixels. The west
half of the scene trains, the east half tests (a spatial split: neighbouring pixels never straddle
train and test). ``--mix cutmix`` adds CutMix with soft targets.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import domainaug as da
from domainaug import remote_sensing
from domainaug.evaluate.tasks import small_cnn
from domainaug.training import AugmentedDataset, CutMix, collate, mixing_collate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data_real" / "derived"
SCENE, CLASSES_MAP = DATA / "nc_landsat7_6band.tif", DATA / "nc_landsat7_strata_dense.tif"
BANDS = ["B1", "B2", "B3", "B4", "B5", "B7"]
CLASSES = 7


def patches(size: int) -> tuple[list[da.Sample], list[da.Sample]]:
    """Labelled patches (class in ``meta["target"]``, 0-based), split west/east."""
    west, east = [], []
    for tile in remote_sensing.classification_patches(SCENE, CLASSES_MAP, size, bands=BANDS, sensor="landsat7"):
        centre = tile.meta["window"][1] + size // 2
        (west if centre < tile.meta["raster_shape"][1] // 2 else east).append(tile)
    return west, east


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mix", choices=["none", "cutmix"], default="none")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    train, test = patches(args.patch)
    dataset = AugmentedDataset(train, remote_sensing.preset("landsat7"), seed=args.seed)
    fn = mixing_collate(CutMix(alpha=1.0, num_classes=CLASSES), seed=args.seed) if args.mix == "cutmix" else collate
    loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers, collate_fn=fn,
                        generator=torch.Generator().manual_seed(args.seed))
    net = small_cnn(len(BANDS), CLASSES)
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    pixels = torch.cat([t["image"].float()[:, t["valid"][0]] for t in train], 1)     # valid train pixels
    mean, std = pixels.mean(1).view(1, -1, 1, 1), pixels.std(1).view(1, -1, 1, 1)
    scale = lambda batch: (batch["image"].float() - mean) / std * batch["valid"]  # noqa: E731 - nodata -> 0
    start, losses = time.perf_counter(), []
    for epoch in range(args.epochs):
        dataset.set_epoch(epoch)
        net.train()
        for batch in loader:
            target = batch["target"]
            logits = net(scale(batch))
            loss = torch.nn.functional.cross_entropy(logits, target)   # soft targets after CutMix
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        net.eval()
        with torch.no_grad():
            held = collate(test)
            accuracy = float((net(scale(held)).argmax(1) == held["target"]).float().mean())
        print(f"epoch {epoch:3d}  train loss {losses[-1]:.3f}  test accuracy {accuracy:.3f}")
    seconds = time.perf_counter() - start
    print(f"{len(train)} train / {len(test)} test patches, {seconds:.1f} s")
    return {"losses": losses, "accuracy": accuracy, "train": len(train), "test": len(test), "seconds": seconds}


if __name__ == "__main__":
    main()
