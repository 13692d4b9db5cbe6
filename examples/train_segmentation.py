"""Train MONAI's 3D UNet for a few iterations on the shipped real T1 and its tissue classes, with
the brain-MRI preset through a PyTorch DataLoader (CPU, a few minutes at the defaults).

    .venv/bin/python examples/train_segmentation.py                      # ~60 iterations
    .venv/bin/python examples/train_segmentation.py --iterations 3 --patch 24 --workers 0   # CI

The preset's spatial steps (reorientation, affine, elastic) are followed by a label-weighted
``Crop``, so the whole chain is fused into one map and only the patch is ever resampled; the
intensity steps then run on the patch. Each loaded volume gives ``--patches`` patches.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import domainaug as da
from domainaug import medical
from domainaug.training import AugmentedDataset, collate, with_patch

ROOT = Path(__file__).resolve().parents[1]
T1 = ROOT / "data_fixtures" / "KmeansTest_T1UCharRaw.nii.gz"
SEG = ROOT / "data_fixtures" / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz"
CLASSES = 7                                    # background + 6 k-means tissue classes


def pipeline(patch: int) -> da.Compose:
    """The brain-MRI preset with a label-weighted patch crop right after its spatial steps."""
    return with_patch(medical.preset("brain-mri"), da.Crop(patch, mode="label", ratios=[1.0] * CLASSES))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--patches", type=int, default=2, help="patches per loaded volume")
    parser.add_argument("--batch", type=int, default=2, help="volumes per batch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    torch.manual_seed(args.seed)
    dataset = AugmentedDataset([(T1, SEG)] * max(args.batch, 4), pipeline(args.patch), seed=args.seed,
                               patches=args.patches)
    loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(args.seed))
    net = UNet(spatial_dims=3, in_channels=1, out_channels=CLASSES, channels=(8, 16, 32), strides=(2, 2),
               num_res_units=1)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses, it, epoch, start = [], 0, 0, time.perf_counter()
    while it < args.iterations:
        dataset.set_epoch(epoch)
        for batch in loader:
            image = batch["image"].float() / 255.0
            label = batch["label"].long()
            loss = loss_fn(net(image), label)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            it += 1
            if it % 10 == 0 or it == args.iterations:
                print(f"iteration {it:4d}  epoch {epoch}  loss {losses[-1]:.4f}")
            if it >= args.iterations:
                break
        epoch += 1
    seconds = time.perf_counter() - start
    print(f"{it} iterations in {seconds:.1f} s; first loss {losses[0]:.4f}, last {losses[-1]:.4f}")
    return {"losses": losses, "seconds": seconds, "batch_shape": tuple(image.shape), "labels": label}


if __name__ == "__main__":
    main()
