"""The peer benchmark suite (issue: benchmarks): every workload in its own process, on 2 CPU threads,
domainaug against the peers doing the same work, and the floor measured in the same process.

    .venv/bin/python benchmarks/suite.py [--runs N] [--only WORKLOAD ...]

Writes benchmarks/results/latest.md and latest.json: per workload and tool the version, median and
min per sample over N >= 5 interleaved rounds after warm-up, the ratio to the fastest peer and to
the floor, and the transient memory of the first call. Peers that cannot do the work (more than 4
bands, 3D masks, no such op) are listed with the reason instead of being timed on something else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu as device_bench  # noqa: E402  (the GPU section's workloads: benchmarks/gpu.py)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_core import THREADS, make_data, reset_peak, rss_kb, sitk_affine  # noqa: E402  (sets the thread counts)

import domainaug as da  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
Row = tuple[str, str, Callable[[], object], str]      # (tool, version, call, note)


def _version_dist(name: str) -> str:
    """The installed version of a distribution whose module has no ``__version__``; ImportError
    when it is not installed."""
    __import__(name)
    import importlib.metadata
    return importlib.metadata.version(name)


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001
        return "-"


def _ours(transform: da.Transform, sample: da.Sample) -> Callable[[], object]:
    counter = {"seed": 0}

    def call():
        counter["seed"] += 1
        return transform(sample, torch.Generator().manual_seed(counter["seed"])).layers

    return call


def _volume():
    image, label = make_data()
    sample = da.Sample(da.Space.from_spacing(tuple(image.shape[1:]), 1.0), {
        "image": da.Layer(image, da.Role.INTENSITY), "label": da.Layer(label, da.Role.LABEL)})
    return image, label, sample


def _floor_3d(image) -> Row:
    shape = tuple(image.shape[1:])
    grid = F.affine_grid(torch.eye(3, 4)[None], (1, 1) + shape, align_corners=True)
    halves = torch.cat([grid[:, : shape[0] // 2], grid[:, shape[0] // 2:]])
    x2 = image[None].expand(2, -1, -1, -1, -1)
    return ("floor", torch.__version__, lambda: F.grid_sample(x2, halves, mode="bilinear", align_corners=True),
            "grid_sample trilinear, identity grid, 2 slabs (image only)")


def _floor_copy(tensor) -> Row:
    return ("floor", torch.__version__, lambda: tensor.clone(), "one copy of the image")


def _monai(transforms, image, label) -> Callable[[], object]:
    from monai.transforms import Compose
    from monai.utils import set_determinism
    set_determinism(seed=0)
    pipeline = Compose(transforms)
    return lambda: pipeline({"image": image, "label": label})


def _torchio(transform, image, label) -> Callable[[], object]:
    import torchio as tio
    subject = tio.Subject(image=tio.ScalarImage(tensor=image.clone(), affine=np.eye(4)),
                          label=tio.LabelMap(tensor=label.clone(), affine=np.eye(4)))
    torch.manual_seed(0)
    return lambda: transform(subject)


def _bg(transforms, image, label, in_place: bool = False) -> Callable[[], object]:
    """batchgenerators (nnU-Net's augmentation) on a batch of one: data (1, C, ...) float32 and seg
    (1, 1, ...), as its transforms take them. ``in_place``: the transform writes into its input,
    so each call gets a fresh copy (counted in its time)."""
    from batchgenerators.transforms.abstract_transforms import Compose
    pipeline = Compose(transforms)
    data, seg = image[None].numpy(), label[None].numpy().astype(np.float32)
    np.random.seed(0)
    if in_place:
        return lambda: pipeline(data=data.copy(), seg=seg)
    return lambda: pipeline(data=data, seg=seg)


def _bg_spatial(shape, rotation: float = 0.0, scale=None, elastic: bool = False):
    """batchgenerators' SpatialTransform: the whole image as the patch, centred (no translation:
    it only moves the patch centre through random cropping), image linear, seg nearest, zero fill."""
    from batchgenerators.transforms.spatial_transforms import SpatialTransform
    angle = (-rotation, rotation)
    return SpatialTransform(shape, patch_center_dist_from_border=None, random_crop=False,
                            do_elastic_deform=elastic, alpha=(0.0, 900.0), sigma=(9.0, 13.0),
                            do_rotation=rotation > 0, angle_x=angle, angle_y=angle, angle_z=angle,
                            do_scale=scale is not None, scale=scale or (1.0, 1.0),
                            border_mode_data="constant", border_cval_data=0, order_data=1,
                            border_mode_seg="constant", border_cval_seg=0, order_seg=0,
                            p_el_per_sample=1.0, p_rot_per_sample=1.0, p_scale_per_sample=1.0)


# ---------------------------------------------------------------------------------------------
# Workloads: each returns its rows (the floor first). Same work everywhere: 160x192x160 float32 +
# uint8 labels, image linear and labels nearest, zero padding, new random parameters every call.
# ---------------------------------------------------------------------------------------------
def w_affine() -> list[Row]:
    image, label, sample = _volume()
    rows = [_floor_3d(image),
            ("domainaug", da.__version__, _ours(da.Affine(degrees=(-10, 10), scales=(0.9, 1.1), translation=(-5, 5)),
                                                sample), "")]
    import SimpleITK as sitk
    rng = np.random.default_rng(1)
    rows.append(("SimpleITK", sitk.Version.VersionString(), sitk_affine(image, label, sample.space),
                 "Resample called directly"))
    from scipy import ndimage
    img_np, lab_np = image[0].numpy(), label[0].numpy()

    def scipy_affine():                        # the same kind of map: rotation, scaling, translation
        params = {"degrees": rng.uniform(-10, 10, 3).tolist(), "scales": rng.uniform(0.9, 1.1, 3).tolist(),
                  "shear": [0.0] * 3, "translation": rng.uniform(-5, 5, 3).tolist()}
        inv = np.linalg.inv(da.Affine.forward(sample.space, params))          # unit spacing: world = index
        return (ndimage.affine_transform(img_np, inv[:3, :3], inv[:3, 3], order=1),
                ndimage.affine_transform(lab_np, inv[:3, :3], inv[:3, 3], order=0))

    rows.append(("scipy", _version("scipy"), scipy_affine, "ndimage.affine_transform order 1 + order 0, 1 thread"))
    try:
        from monai.transforms import RandAffined
        rows.append(("MONAI", _version("monai"), _monai([RandAffined(
            ["image", "label"], prob=1.0, rotate_range=[np.radians(10)] * 3, scale_range=[0.1] * 3,
            translate_range=[5] * 3, mode=("bilinear", "nearest"), padding_mode="zeros")], image, label),
                     "RandAffined"))
    except ImportError:
        pass
    try:
        import torchio as tio
        rows.append(("TorchIO", _version("torchio"), _torchio(tio.RandomAffine(scales=(0.9, 1.1), degrees=10,
                                                                               translation=5), image, label),
                     "RandomAffine (ITK inside; subject deep-copied per call)"))
    except ImportError:
        pass
    try:
        rows.append(("batchgenerators", _version_dist("batchgenerators"),
                     _bg([_bg_spatial(tuple(image.shape[1:]), np.radians(10), (0.9, 1.1))], image, label),
                     "SpatialTransform rotation + scale (no translation), scipy map_coordinates, 1 thread"))
    except ImportError:
        pass
    return rows


def w_elastic(with_affine: bool = False) -> list[Row]:
    image, label, sample = _volume()
    elastic = da.Elastic(spacing=32.0, max_displacement=(3.0, 6.0))
    affine = da.Affine(degrees=(-10, 10), scales=(0.9, 1.1))
    rows = [_floor_3d(image), ("domainaug", da.__version__,
                               _ours(da.Compose([affine, elastic]) if with_affine else elastic, sample), "")]
    try:
        from monai.transforms import Rand3DElasticd
        extra = dict(rotate_range=[np.radians(10)] * 3, scale_range=[0.1] * 3) if with_affine else {}
        rows.append(("MONAI", _version("monai"), _monai([Rand3DElasticd(
            ["image", "label"], sigma_range=(5, 8), magnitude_range=(100, 200), prob=1.0,
            mode=("bilinear", "nearest"), padding_mode="zeros", **extra)], image, label),
            "Rand3DElasticd (full-resolution smoothed noise field)"))
    except ImportError:
        pass
    try:
        import torchio as tio
        elastic_tio = tio.RandomElasticDeformation(num_control_points=7, max_displacement=6)
        t = tio.Compose([tio.RandomAffine(scales=(0.9, 1.1), degrees=10), elastic_tio]) if with_affine else elastic_tio
        rows.append(("TorchIO", _version("torchio"), _torchio(t, image, label),
                     "RandomElasticDeformation (ITK B-spline)" +
                     (" after RandomAffine: 2 resamplings" if with_affine else "")))
    except ImportError:
        pass
    try:
        spatial = _bg_spatial(tuple(image.shape[1:]), np.radians(10) if with_affine else 0.0,
                              (0.9, 1.1) if with_affine else None, elastic=True)
        rows.append(("batchgenerators", _version_dist("batchgenerators"), _bg([spatial], image, label),
                     "SpatialTransform elastic (alpha 0-900, sigma 9-13: full-resolution smoothed noise field)"
                     + (" + rotation + scale, one resampling" if with_affine else "") + ", 1 thread"))
    except ImportError:
        pass
    return rows


def w_intensity(kind: str) -> list[Row]:
    from domainaug import medical as md
    image, label, sample = _volume()
    ours = {"bias field": md.BiasField((-0.3, 0.3), order=3), "gamma": da.Gamma((0.7, 1.5)),
            "Rician noise": md.RicianNoise((0.05, 0.1)), "motion": md.Motion((-3, 3), (-3, 3), num_movements=2)}[kind]
    rows = [_floor_copy(image), ("domainaug", da.__version__, _ours(ours, sample), "")]
    try:
        from monai.transforms import RandAdjustContrastd, RandBiasFieldd, RandRicianNoised
        monai_t = {"bias field": lambda: RandBiasFieldd(["image"], degree=3, coeff_range=(0.0, 0.3), prob=1.0),
                   "gamma": lambda: RandAdjustContrastd(["image"], gamma=(0.7, 1.5), prob=1.0),
                   "Rician noise": lambda: RandRicianNoised(["image"], std=0.1, prob=1.0)}.get(kind)
        if monai_t is not None:
            rows.append(("MONAI", _version("monai"), _monai([monai_t()], image, label), ""))
        else:
            rows.append(("MONAI", _version("monai"), None, "no motion artefact transform"))
    except ImportError:
        pass
    try:
        import torchio as tio
        tio_t = {"bias field": lambda: tio.RandomBiasField(coefficients=0.3, order=3),
                 "gamma": lambda: tio.RandomGamma(log_gamma=(-0.36, 0.4)),
                 "motion": lambda: tio.RandomMotion(degrees=3, translation=3, num_transforms=2)}.get(kind)
        if tio_t is not None:
            rows.append(("TorchIO", _version("torchio"), _torchio(tio_t(), image, label),
                         "subject deep-copied per call"))
        else:
            rows.append(("TorchIO", _version("torchio"), None, "no Rician noise transform"))
    except ImportError:
        pass
    try:
        version = _version_dist("batchgenerators")
        from batchgenerators.transforms.color_transforms import GammaTransform
        from batchgenerators.transforms.noise_transforms import RicianNoiseTransform
        bg_t = {"gamma": lambda: GammaTransform((0.7, 1.5), p_per_sample=1.0),
                "Rician noise": lambda: RicianNoiseTransform((0.05 ** 2, 0.1 ** 2), p_per_sample=1.0)}.get(kind)
        if bg_t is not None:
            rows.append(("batchgenerators", version, _bg([bg_t()], image, label, in_place=True),
                         "writes into its input: a fresh copy per call is counted"
                         + ("; noise variance in intensity units" if kind == "Rician noise" else "")))
        else:
            rows.append(("batchgenerators", version, None, f"no {kind} transform"))
    except ImportError:
        pass
    return rows


def w_sliding_window() -> list[Row]:
    """Sliding-window inference overhead (the model is an identity that returns a new tensor, as a
    network does): 96^3 patches, overlap 0.25, gaussian blending, one patch per call. Target (issue
    "medical ops"): <= 1.2x MONAI's time."""
    image, label, sample = _volume()
    model = lambda batch: batch.clone()  # noqa: E731 - the same predictor for every tool
    rows = [_floor_copy(image), ("domainaug", da.__version__,
                                 lambda: da.sliding_window_inference(sample, model, 96, overlap=0.25, blend="gaussian"),
                                 "Sample in, Sample out on its Space")]
    try:
        from monai.inferers import sliding_window_inference
        batch = image[None]
        rows.append(("MONAI", _version("monai"), lambda: sliding_window_inference(
            batch, (96, 96, 96), 1, model, overlap=0.25, mode="gaussian"), "tensor (1, 1, ...), float32"))
    except ImportError:
        pass
    try:
        import torchio as tio
        subject = tio.Subject(image=tio.ScalarImage(tensor=image.clone(), affine=np.eye(4)))

        def torchio_call():
            sampler = tio.inference.GridSampler(subject, 96, (24, 24, 24))
            aggregator = tio.inference.GridAggregator(sampler, overlap_mode="hann")
            for patch in torch.utils.data.DataLoader(sampler, batch_size=1):
                aggregator.add_batch(model(patch["image"][tio.DATA]), patch[tio.LOCATION])
            return aggregator.get_output_tensor()

        rows.append(("TorchIO", _version("torchio"), torchio_call,
                     "GridSampler + GridAggregator(overlap_mode='hann'): 24-voxel overlap, Hann window"))
    except ImportError:
        pass
    return rows


def w_preset() -> list[Row]:
    from domainaug import medical as md
    image, label, sample = _volume()
    return [_floor_copy(image), ("domainaug", da.__version__, _ours(md.preset("brain-mri"), sample),
                                 "10 steps: reorient, affine, elastic, bias, gamma, noise, blur, ghosting, spike, "
                                 "motion"),
            ("MONAI / TorchIO", "-", None, "no equivalent preset; their single ops are timed in the rows above")]


def w_normalize() -> list[Row]:
    """Z-score of the image over every voxel (the label rides along untouched)."""
    image, label, sample = _volume()
    rows = [_floor_copy(image), ("domainaug", da.__version__, _ours(da.NormalizeIntensity(), sample),
                                 "mean and population std, fixed-chunk float64 sums")]
    try:
        from monai.transforms import NormalizeIntensityd
        rows.append(("MONAI", _version("monai"), _monai([NormalizeIntensityd(["image"])], image, label),
                     "NormalizeIntensityd"))
    except ImportError:
        pass
    try:
        import torchio as tio
        rows.append(("TorchIO", _version("torchio"), _torchio(tio.ZNormalization(), image, label),
                     "ZNormalization; subject deep-copied per call"))
    except ImportError:
        pass
    return rows


def w_crop_foreground() -> list[Row]:
    """Crop image, label and mask to the bounding box of a mask (shell 1 of the label map: about half
    of each axis, an eighth of the volume)."""
    image, label, sample = _volume()
    mask = (label == 1).to(torch.uint8)
    sample = sample.with_layers(mask=da.Layer(mask, da.Role.LABEL))
    rows = [_floor_copy(image), ("domainaug", da.__version__, _ours(da.CropForeground("mask"), sample),
                                 "box found on the mask; image, label and mask cropped")]
    try:
        from monai.transforms import CropForegroundd
        crop = CropForegroundd(["image", "label", "mask"], source_key="mask")
        rows.append(("MONAI", _version("monai"), lambda: crop({"image": image, "label": label, "mask": mask}),
                     "CropForegroundd(source_key='mask')"))
    except ImportError:
        pass
    try:
        import torchio as tio
        subject = tio.Subject(image=tio.ScalarImage(tensor=image.clone(), affine=np.eye(4)),
                              label=tio.LabelMap(tensor=label.clone(), affine=np.eye(4)),
                              mask=tio.LabelMap(tensor=mask.clone(), affine=np.eye(4)))
        crop_t = tio.CropOrPad(mask_name="mask")
        rows.append(("TorchIO", _version("torchio"), lambda: crop_t(subject),
                     "CropOrPad(mask_name='mask'), no target shape: the mask's box; subject deep-copied per call"))
    except ImportError:
        pass
    return rows


def w_labels_to_image() -> list[Row]:
    """A synthetic image from the label map: one Gaussian per label, as a new layer (TorchIO's
    RandomLabelsToImage does the same, without blur or bias field)."""
    from domainaug import medical as md
    image, label, sample = _volume()
    plain = md.LabelsToImage(mean=(0.1, 0.9), std=(0.01, 0.1), units="raw", blur=0.0, bias=0.0)
    full = md.LabelsToImage(mean=(0.1, 0.9), std=(0.01, 0.1), units="raw", blur=(0.5, 1.0), bias=(-0.15, 0.15))
    rows = [_floor_copy(image),
            ("domainaug", da.__version__, _ours(plain, sample), "Gaussian per label only (TorchIO's work)"),
            ("domainaug (SynthSeg-style)", da.__version__, _ours(full, sample),
             "plus partial-volume blur 0.5-1 mm and a bias field (not the peers' work)")]
    try:
        import torchio as tio
        rows.append(("TorchIO", _version("torchio"),
                     _torchio(tio.RandomLabelsToImage(label_key="label", image_key="image_from_labels"), image,
                              label), "defaults: mean 0.1-0.9, std 0.01-0.1 per label; subject deep-copied per call"))
    except ImportError:
        pass
    rows.append(("MONAI", _version("monai"), None, "no labels-to-image transform"))
    return rows


def w_atlas() -> list[Row]:
    image, label, sample = _volume()
    rng = np.random.default_rng(0)
    atlas = np.kron(rng.permutation(np.arange(1, 117)).reshape(4, 29, 1), np.ones((40, 6, 160), int))
    atlas = np.pad(atlas, ((0, 0), (0, 192 - atlas.shape[1]), (0, 0)))[:, :, :160].astype(np.uint8)
    atlas_t = torch.from_numpy(atlas)[None]
    atlas_sample = sample.with_layers(label=da.Layer(atlas_t, da.Role.LABEL))
    rows = [_floor_3d(image), ("domainaug", da.__version__, _ours(da.Affine(degrees=(-10, 10), scales=(0.9, 1.1)),
                                                                  atlas_sample), "116 labels, nearest")]
    try:
        from monai.transforms import RandAffined
        rows.append(("MONAI", _version("monai"), _monai([RandAffined(
            ["image", "label"], prob=1.0, rotate_range=[np.radians(10)] * 3, scale_range=[0.1] * 3,
            mode=("bilinear", "nearest"), padding_mode="zeros")], image, atlas_t), "RandAffined, 116 labels"))
    except ImportError:
        pass
    try:
        rows.append(("batchgenerators", _version_dist("batchgenerators"),
                     _bg([_bg_spatial(tuple(image.shape[1:]), np.radians(10), (0.9, 1.1))], image, atlas_t),
                     "SpatialTransform rotation + scale, seg order 0 (116 labels), 1 thread"))
    except ImportError:
        pass
    return rows


def _raster():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_rs
    return bench_rs.make_sample()


def w_raster(kind: str) -> list[Row]:
    from domainaug import remote_sensing as rs
    sample = _raster()
    image, label = sample["image"], sample["label"]
    ours = {"dihedral": rs.RotationPolicy("dihedral"),
            "any-angle rotation": rs.RotationPolicy("any"),
            "spectral jitter": rs.SpectralJitter(gain=(0.9, 1.1), bias=(-0.02, 0.02)),
            "crop 512": da.Crop(512)}[kind]
    if kind == "any-angle rotation":
        shape = tuple(image.shape[1:])
        grid = F.affine_grid(torch.eye(2, 3)[None], (1, 1) + shape, align_corners=True)
        halves = torch.cat([grid[:, : shape[0] // 2], grid[:, shape[0] // 2:]])
        x2 = image[None].expand(2, -1, -1, -1)
        floor: Row = ("floor", torch.__version__,
                      lambda: F.grid_sample(x2, halves, mode="bilinear", align_corners=True),
                      "grid_sample bilinear, identity grid, 2 slabs (image only)")
    else:
        floor = _floor_copy(image)
    rows = [floor, ("domainaug", da.__version__, _ours(ours, sample), "CHW, image + label (+ validity for any-angle)")]
    try:
        import albumentations as A
        hwc, mask = np.ascontiguousarray(image.permute(1, 2, 0).numpy()), label[0].numpy()
        op = {"dihedral": lambda: A.D4(p=1.0), "any-angle rotation": lambda: A.Rotate(limit=180, p=1.0),
              "spectral jitter": lambda: A.MultiplicativeNoise(multiplier=(0.9, 1.1), per_channel=True, p=1.0),
              "crop 512": lambda: A.RandomCrop(512, 512, p=1.0)}[kind]()
        compose = A.Compose([op], seed=0)
        note = "HWC input (a CHW user pays 2 transposes more)" + ("; gain only" if kind == "spectral jitter" else "")
        if kind == "dihedral":
            note += "; returns numpy views, no copy (torch.from_numpy refuses their negative strides)"
        rows.append(("Albumentations", A.__version__, lambda: compose(image=hwc, mask=mask), note))
    except ImportError:
        pass
    try:
        import kornia.augmentation as K
        x, m = image[None], label[None].float()
        aug = {"dihedral": lambda: [K.RandomHorizontalFlip(p=0.5), K.RandomRotation90(times=(0, 3), p=1.0)],
               "any-angle rotation": lambda: [K.RandomRotation(degrees=180.0, p=1.0)],
               "crop 512": lambda: [K.RandomCrop((512, 512), p=1.0)]}.get(kind)
        if aug is None:
            rows.append(("Kornia", _version("kornia"), None, "no per-band gain/bias for 12 bands"))
        else:
            seq = K.AugmentationSequential(*aug(), data_keys=["input", "mask"])
            rows.append(("Kornia", _version("kornia"), lambda: seq(x, m),
                         "rot90 is a bilinear warp" if kind == "dihedral" else ""))
    except ImportError:
        pass
    try:
        version = _version_dist("batchgenerators")
        from batchgenerators.transforms.color_transforms import BrightnessMultiplicativeTransform
        from batchgenerators.transforms.crop_and_pad_transforms import RandomCropTransform
        from batchgenerators.transforms.spatial_transforms import MirrorTransform, Rot90Transform
        bg_ops = {"dihedral": lambda: [MirrorTransform(axes=(0,)), Rot90Transform((0, 1, 2, 3), axes=(0, 1),
                                                                                  p_per_sample=1.0)],
                  "any-angle rotation": lambda: [_bg_spatial(tuple(image.shape[1:]), np.pi)],
                  "spectral jitter": lambda: [BrightnessMultiplicativeTransform((0.9, 1.1), per_channel=True,
                                                                                p_per_sample=1.0)],
                  "crop 512": lambda: [RandomCropTransform(512)]}[kind]()
        note = {"any-angle rotation": "SpatialTransform 2D, scipy map_coordinates per band, 1 thread",
                "spectral jitter": "gain only; writes into its input: a fresh copy per call is counted",
                "dihedral": "mirror + rot90 (numpy)"}.get(kind, "")
        rows.append(("batchgenerators", version, _bg(bg_ops, image, label, in_place=kind == "spectral jitter"),
                     note))
    except ImportError:
        pass
    return rows


def _rgb_u8() -> tuple[np.ndarray, da.Sample]:
    """A smooth 3x1024^2 uint8 RGB image (HWC for the peers) and the same as a sample (CHW float32,
    red/green/blue named, 8-bit value range given as a uint8 file would have it)."""
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.random((1, 3, 64, 64)).astype(np.float32))
    chw = (F.interpolate(coarse, size=(1024, 1024), mode="bicubic", align_corners=True)[0].clamp(0, 1) * 255).round()
    chw = chw + torch.from_numpy(rng.normal(0, 4, (3, 1024, 1024)).astype(np.float32))
    chw = chw.clamp(0, 255).round()
    sample = da.Sample.from_numpy(chw.numpy(), spacing=0.5, channels=["red", "green", "blue"])
    sample.meta["layers"] = {"image": {"on_disk_dtype": "uint8"}}
    return np.ascontiguousarray(chw.permute(1, 2, 0).numpy().astype(np.uint8)), sample


def w_vision(kind: str) -> list[Row]:
    """The vision ops of detection pipelines (issue 19): JPEG on 3x1024^2 uint8 RGB, colour jitter on
    the same, random resized crop of the 12-band 1024^2 raster to 512^2."""
    from domainaug import remote_sensing as rs
    if kind == "crop":
        sample = _raster()
        image, label = sample["image"], sample["label"]
        theta = torch.tensor([[[0.5, 0.0, 0.1], [0.0, 0.5, -0.1]]])
        grid = F.affine_grid(theta, (1, 1, 512, 512), align_corners=False)
        rows: list[Row] = [("floor", torch.__version__,
                            lambda: F.grid_sample(image[None], grid, mode="bilinear", align_corners=False),
                            "grid_sample bilinear of the 12 bands onto 512^2 (image only)"),
                           ("domainaug", da.__version__, _ours(da.RandomResizedCrop(512), sample),
                            "CHW, image + label, one pass")]
        try:
            import albumentations as A
            hwc, mask = np.ascontiguousarray(image.permute(1, 2, 0).numpy()), label[0].numpy()
            compose = A.Compose([A.RandomResizedCrop((512, 512), p=1.0)], seed=0)
            rows.append(("Albumentations", A.__version__, lambda: compose(image=hwc, mask=mask),
                         "HWC input (a CHW user pays 2 transposes more)"))
        except ImportError:
            pass
        try:
            import kornia.augmentation as K
            seq = K.AugmentationSequential(K.RandomResizedCrop((512, 512), p=1.0), data_keys=["input", "mask"])
            x, m = image[None], label[None].float()
            rows.append(("Kornia", _version("kornia"), lambda: seq(x, m), "crop + resize by warp_affine"))
        except ImportError:
            pass
        try:
            from torchvision.transforms import v2
            rrc = v2.RandomResizedCrop((512, 512), antialias=False)
            rows.append(("torchvision", _version("torchvision"), lambda: rrc(image, label), "antialias off, as ours"))
        except ImportError:
            rows.append(("torchvision", "-", None, "not installed here"))
        return rows
    hwc, sample = _rgb_u8()
    if kind == "jpeg":
        from PIL import Image

        def codec():
            import io
            buffer = io.BytesIO()
            Image.fromarray(hwc).save(buffer, format="JPEG", quality=75)
            buffer.seek(0)
            return np.asarray(Image.open(buffer))
        rows = [("floor", _version("PIL"), codec, "Pillow JPEG encode + decode of the uint8 HWC array at quality 75"),
                ("domainaug", da.__version__, _ours(rs.Compression((50, 95)), sample), "CHW float32 in and out")]
        try:
            import albumentations as A
            compose = A.Compose([A.ImageCompression(quality_range=(50, 95), compression_type="jpeg", p=1.0)], seed=0)
            rows.append(("Albumentations", A.__version__, lambda: compose(image=hwc), "ImageCompression, HWC uint8"))
        except ImportError:
            pass
        return rows
    rows = [_floor_copy(sample["image"]),
            ("domainaug", da.__version__, _ours(rs.ColorJitter((0.8, 1.2), (0.8, 1.2), (0.8, 1.2), (-10, 10)),
                                                sample), "CHW float32: brightness, contrast, saturation, hue")]
    try:
        import albumentations as A
        hsv = A.Compose([A.HueSaturationValue(p=1.0)], seed=0)
        rows.append(("Albumentations", A.__version__, lambda: hsv(image=hwc), "HueSaturationValue, HWC uint8 (LUTs)"))
        jitter = A.Compose([A.ColorJitter(p=1.0)], seed=0)
        rows.append(("Albumentations ColorJitter", A.__version__, lambda: jitter(image=hwc), "HWC uint8"))
    except ImportError:
        pass
    try:
        import kornia.augmentation as K
        kj = K.ColorJitter(0.2, 0.2, 0.2, 10 / 360, p=1.0)
        x = sample["image"][None] / 255
        rows.append(("Kornia", _version("kornia"), lambda: kj(x), "float (1, 3, H, W) in [0, 1]"))
    except ImportError:
        pass
    return rows


def w_raster_boxes(count: int = 1000) -> list[Row]:
    """Affine + Elastic on the 12-band raster, with and without ``count`` axis-aligned boxes (10 to 60
    pixels); the floor is the same pipeline without boxes, so ``x floor`` is what the boxes add
    (target: at most 1.05)."""
    sample = _raster()
    rng = np.random.default_rng(0)
    space = sample.space
    lo = rng.uniform(0, 960, (count, 2))
    pixels = np.concatenate([lo, lo + rng.uniform(10, 60, (count, 2))], axis=1)
    boxes = da.Boxes.from_pixels(pixels, space, labels=rng.integers(0, 5, count))
    with_boxes = sample.replace(boxes={"objects": boxes})
    pipeline = da.Compose([da.Affine(degrees=(-20, 20), scales=(0.9, 1.1)),
                           da.Elastic(spacing=1280.0, max_displacement=(20.0, 60.0))])
    rows: list[Row] = [("floor", da.__version__, _ours(pipeline, sample), "the same domainaug pipeline without boxes"),
                       ("domainaug", da.__version__, _ours(pipeline, with_boxes),
                        f"CHW, image + label + {count} boxes (target: x floor <= 1.05)")]
    # Albumentations 2.0.8 took over a minute per call for this (ElasticTransform with bbox_params and
    # 1000 boxes), which would hold the suite up for a quarter of an hour, so it is listed, not timed.
    rows.append(("Albumentations", _version("albumentations"), None,
                 "Affine + ElasticTransform with 1000 bboxes took over a minute per call; not timed"))
    return rows


def w_batched_preset(b: int = 8, size: int = 256) -> list[Row]:
    """The ``sentinel2`` preset on a batch of ``b`` 12-band ``size``^2 tiles + label: ``BatchAugment``
    (the pipeline over the batch at once) against the per-element loop (the pipeline on each element
    alone, then stacked, as before issue 22), which is the floor here. Target (issue 22, CPU): >= 2x
    the per-element loop (x floor <= 0.5)."""
    from domainaug import remote_sensing as rs
    from domainaug.remote_sensing.bands import sensor
    from domainaug.training import BatchAugment
    from domainaug.training.stack import stack_samples
    sample = _raster()
    names = [band.name for band in sensor("sentinel2").bands][:12]
    per_row = sample.space.shape[1] // size
    tiles = [(slice(None), slice((k // per_row) * size, (k // per_row + 1) * size),
              slice((k % per_row) * size, (k % per_row + 1) * size)) for k in range(b)]
    images = torch.stack([sample["image"][t] for t in tiles]).contiguous()
    labels = torch.stack([sample["label"][t] for t in tiles]).contiguous()
    pipeline, counter = rs.preset("sentinel2"), {"call": 0}
    augment = BatchAugment(pipeline, seed=0)

    def indices() -> list[int]:
        counter["call"] += 1
        return [counter["call"] * b + k for k in range(b)]

    def batched():
        return augment(images, labels, fill=0.0, channels=names, indices=indices())

    def loop():
        elements = augment.samples(images, labels, fill=0.0, channels=names)
        return stack_samples([pipeline(e, da.generator_for(0, 0, i)) for e, i in zip(elements, indices())])
    batched.samples = loop.samples = b  # type: ignore[attr-defined]
    return [("floor", da.__version__, loop, f"the per-element loop: the preset on each of {b} elements, then stacked"),
            ("domainaug", da.__version__, batched, f"BatchAugment, {b} x 12x{size}^2 + label in one call")]


def w_contrasts() -> list[Row]:
    """4 contrasts (1x160x192x160 each) + label through Affine + Elastic: one sample with every layer
    against 4 single-layer calls (what a one-image API makes a user do) and the peers given 5 keys.
    Target (issue "many layers"): <= 1.3x the floor sum of 4 single-layer calls."""
    image, label, _ = _volume()
    contrasts = [(image * (0.6 + 0.2 * k) + 0.1 * k).contiguous() for k in range(4)]
    names = [f"c{k}" for k in range(4)]
    space = da.Space.from_spacing(tuple(image.shape[1:]), 1.0)
    layers = {n: da.Layer(c) for n, c in zip(names, contrasts)}
    sample = da.Sample(space, {**layers, "label": da.Layer(label, da.Role.LABEL)})
    pipeline = da.Compose([da.Affine(degrees=(-10, 10), scales=(0.9, 1.1)),
                           da.Elastic(spacing=32.0, max_displacement=(3.0, 6.0))])
    singles = [da.Sample(space, {"image": layers[n], "label": da.Layer(label, da.Role.LABEL)}) for n in names]
    calls = [_ours(pipeline, s) for s in singles]
    floor = _floor_3d(image)[2]
    rows = [("floor", torch.__version__, lambda: [floor() for _ in range(4)],
             "4 x grid_sample trilinear, identity grid, 2 slabs (the floor sum of 4 single-layer calls)"),
            ("domainaug", da.__version__, _ours(pipeline, sample),
             "one sample: 4 contrasts + label, one coordinate map"),
            ("domainaug, 4 calls", da.__version__, lambda: [c() for c in calls],
             "each contrast (+ label) alone: 4 coordinate maps, 4 label resamplings")]
    try:
        from monai.transforms import Compose, Rand3DElasticd
        from monai.utils import set_determinism
        set_determinism(seed=0)
        keys = names + ["label"]
        monai_t = Compose([Rand3DElasticd(keys, sigma_range=(5, 8), magnitude_range=(100, 200), prob=1.0,
                                    rotate_range=[np.radians(10)] * 3, scale_range=[0.1] * 3,
                                    mode=["bilinear"] * 4 + ["nearest"], padding_mode="zeros")])
        data = {**dict(zip(names, contrasts)), "label": label}
        rows.append(("MONAI", _version("monai"), lambda: monai_t(data), "Rand3DElasticd, 5 keys"))
    except ImportError:
        pass
    try:
        import torchio as tio
        subject = tio.Subject(**{n: tio.ScalarImage(tensor=c.clone(), affine=np.eye(4))
                                 for n, c in zip(names, contrasts)},
                              label=tio.LabelMap(tensor=label.clone(), affine=np.eye(4)))
        tio_t = tio.Compose([tio.RandomAffine(scales=(0.9, 1.1), degrees=10),
                             tio.RandomElasticDeformation(num_control_points=7, max_displacement=6)])
        torch.manual_seed(0)
        rows.append(("TorchIO", _version("torchio"), lambda: tio_t(subject), "RandomAffine + RandomElasticDeformation, "
                     "5 images: 2 resamplings each"))
    except ImportError:
        pass
    return rows


def _s2_field(space: da.Space, seed: int, stages=()) -> np.ndarray:
    """A smooth reflectance-like field (wavelengths of 400-900 m) of the world position."""
    from domainaug.core.maps import pull_back_points
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in space.shape], indexing="ij"), -1).reshape(-1, 2)
    x, y = pull_back_points(list(stages), space.index_to_world(idx)).T - np.array([500000.0, 4200000.0])[:, None]
    rng = np.random.default_rng(seed)
    kx, ky = rng.uniform(2 * np.pi / 900, 2 * np.pi / 400, 2)
    return (2000 + 800 * np.sin(kx * x + rng.uniform(0, 6)) * np.cos(ky * y)).reshape(space.shape).astype(np.float32)


def w_sentinel2() -> list[Row]:
    """Sentinel-2-like 10 m (4 bands, 1024^2) + 20 m (6 bands, 512^2), any-angle rotation and a
    512^2 crop on the 10 m grid. domainaug keeps the 20 m bands on their grid and fuses the move to
    10 m with the warp (ResampleToMatch last: one interpolation); the usual way (TorchGeo, nnU-Net)
    resamples to 10 m first (rasterio.warp.reproject, bilinear), then augments 10 bands (two
    interpolations). Max error of the 20 m bands against the field itself, inside the scene."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    from domainaug.core.transform import trace
    x0, y0 = 500000.0, 4200000.0
    s10 = da.Space((1024, 1024), np.array([[0.0, 10.0, x0 + 5], [-10.0, 0.0, y0 - 5], [0, 0, 1]]), "EPSG:32633")
    s20 = da.Space((512, 512), np.array([[0.0, 20.0, x0 + 10], [-20.0, 0.0, y0 - 10], [0, 0, 1]]), "EPSG:32633")
    b10 = torch.from_numpy(np.stack([_s2_field(s10, b) for b in range(4)]))
    b20 = torch.from_numpy(np.stack([_s2_field(s20, 10 + b) for b in range(6)]))
    sample = da.Sample(s10, {"b10": da.Layer(b10), "b20": da.Layer(b20)}, grids={"b20": s20})
    warp = [da.Affine(degrees=(-180, 180)), da.Crop(512)]
    fused = da.Compose(warp + [da.ResampleToMatch("b10")])
    t10 = rasterio.Affine(10.0, 0.0, x0, 0.0, -10.0, y0)
    t20 = rasterio.Affine(20.0, 0.0, x0, 0.0, -20.0, y0)
    first = da.Compose(warp)

    def rasterio_first(generator):
        up = np.empty((6, 1024, 1024), np.float32)
        reproject(b20.numpy(), up, src_transform=t20, dst_transform=t10, src_crs="EPSG:32633", dst_crs="EPSG:32633",
                  resampling=Resampling.bilinear, num_threads=THREADS)
        one = da.Sample(s10, {"b10": da.Layer(b10), "b20": da.Layer(torch.from_numpy(up))})
        return first(one, generator)

    # the error of each way on one draw (the same rotation and crop)
    out = fused(sample, torch.Generator().manual_seed(1))
    two = rasterio_first(torch.Generator().manual_seed(1))
    stages = trace(s10, out.history).stages
    truth = np.stack([_s2_field(out.space, 10 + b, stages) for b in range(6)])
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in out.space.shape], indexing="ij"), -1).reshape(-1, 2)
    from domainaug.core.maps import pull_back_points
    src = s20.world_to_index(pull_back_points(stages, out.space.index_to_world(idx)))
    inside = np.all((src >= 1) & (src <= 510), axis=1).reshape(out.space.shape)
    err = {k: float(np.abs(o["b20"].numpy() - truth)[:, inside].max()) for k, o in (("ours", out), ("two", two))}
    mean = {k: float(np.abs(o["b20"].numpy() - truth)[:, inside].mean()) for k, o in (("ours", out), ("two", two))}
    counter = {"seed": 0}

    def peer():
        counter["seed"] += 1
        return rasterio_first(torch.Generator().manual_seed(counter["seed"])).layers

    grid = F.affine_grid(torch.eye(2, 3)[None], (1, 1, 512, 512), align_corners=True)
    both = torch.cat([b10[:, :512, :512], torch.from_numpy(np.ascontiguousarray(b20.numpy()[:, :512, :512]))])[None]
    return [("floor", torch.__version__, lambda: F.grid_sample(both, grid, mode="bilinear", align_corners=True),
             "grid_sample bilinear of the 10 bands at the 512^2 output, identity grid"),
            ("domainaug", da.__version__, _ours(fused, sample),
             f"20 m kept on its grid, fused: max error {err['ours']:.2f} (mean {mean['ours']:.2f}) of 800 amplitude"),
            ("rasterio, then domainaug", f"rasterio {rasterio.__version__}", peer,
             f"reproject 20 m -> 10 m first: max error {err['two']:.2f} (mean {mean['two']:.2f})")]


def w_loader() -> list[Row]:
    """Training throughput: 8 samples per call through a DataLoader with 2 worker processes, the
    brain-mri-like augmentation with a 96^3 label-weighted patch, time per sample."""
    from torch.utils.data import DataLoader

    from domainaug.training import AugmentedDataset, collate
    image, label, sample = _volume()
    n = 8
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_training import patch_pipeline
    ours_pipeline = patch_pipeline(96)
    ours_pipeline(sample, torch.Generator().manual_seed(0))          # compile before forking
    ds = AugmentedDataset([sample] * n, ours_pipeline, seed=0)
    epoch = {"e": 0}

    def ours():
        epoch["e"] += 1
        ds.set_epoch(epoch["e"])
        for _ in DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate):
            pass

    ours.samples = n
    rows: list[Row] = [("domainaug", da.__version__, ours, "AugmentedDataset, 2 workers, affine + elastic + "
                        "96^3 label-weighted patch (fused) + bias, gamma, noise, blur, artefacts")]
    try:
        from monai.data import DataLoader as MonaiLoader
        from monai.data import Dataset
        from monai.transforms import (
            Compose,
            RandAdjustContrastd,
            RandAffined,
            RandBiasFieldd,
            RandCropByLabelClassesd,
            RandGaussianNoised,
            RandGaussianSmoothd,
        )
        monai_pipeline = Compose([
            RandAffined(["image", "label"], prob=1.0, rotate_range=[np.radians(10)] * 3, scale_range=[0.1] * 3,
                        translate_range=[5] * 3, mode=("bilinear", "nearest")),
            RandCropByLabelClassesd(["image", "label"], "label", spatial_size=(96, 96, 96), num_classes=5,
                                    num_samples=1),
            RandBiasFieldd(["image"], prob=0.5), RandAdjustContrastd(["image"], prob=0.5, gamma=(0.7, 1.5)),
            RandGaussianNoised(["image"], prob=0.3, std=0.05), RandGaussianSmoothd(["image"], prob=0.2)])
        loader = MonaiLoader(Dataset([{"image": image, "label": label}] * n, monai_pipeline), batch_size=2,
                             num_workers=2)

        def monai():
            for _ in loader:
                pass

        monai.samples = n
        rows.append(("MONAI", _version("monai"), monai, "RandAffined (no elastic: it costs 2 s a sample) + "
                     "RandCropByLabelClassesd 96^3 after the full-volume warp + intensity ops, monai DataLoader"))
    except ImportError:
        pass
    try:
        rows.append(("batchgenerators", _version_dist("batchgenerators"), None,
                     "not timed: it feeds training through its own MultiThreadedAugmenter, not a torch DataLoader"))
    except ImportError:
        pass
    return rows


# ---------------------------------------------------------------------------------------------
# GPU section: the same kinds of work on batches, on a CUDA device; absent without one.
# DOMAINAUG_BENCH_DEVICE=cpu runs it on the CPU (a check of the code path, not a measurement).
# ---------------------------------------------------------------------------------------------
def bench_device() -> torch.device | None:
    name = os.environ.get("DOMAINAUG_BENCH_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda") if torch.cuda.is_available() else None


def _on(device: torch.device, fn: Callable[[], object], batch: int) -> Callable[[], object]:
    """``fn`` timed to its end on ``device`` (CUDA runs asynchronously), per sample of ``batch``."""
    def call():
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out
    call.samples = batch
    return call


def g_workload(key: str, device: torch.device) -> list[Row]:
    """benchmarks/gpu.py's workload ``key`` at full size as suite rows: its ratio's floor first,
    every call timed to its end on ``device``. A peer that is not installed is left out (as in the
    CPU workloads); one doing less work (Kornia's 3D affine without elastic) is listed, not timed."""
    workload = device_bench.WORKLOADS[key]
    batch = workload.batch(device_bench.FULL)
    rows = sorted(workload.build(device, device_bench.FULL), key=lambda r: r.tool != workload.floor)
    out: list[Row] = []
    for r in rows:
        if r.kind == "skipped" and r.note.startswith("skipped"):
            continue
        timed = r.call is not None and r.kind != "partial"
        out.append(("floor" if r.kind == "floor" else r.tool, r.version,
                    _on(device, r.call, batch) if timed else None, r.error or r.note))
    if key.startswith("3d"):                            # peers that only run on the CPU: listed, not timed
        return out + [("TorchIO", _version("torchio"), None, "CPU only")]
    return out + [("Albumentations", _version("albumentations"), None, "numpy on the CPU only")]


GPU_DEVICE = bench_device()
GPU_WORKLOADS: dict[str, Callable[[], list[Row]]] = {} if GPU_DEVICE is None else {
    "GPU 3D affine + elastic, batch of 4": lambda: g_workload("3d-spatial", GPU_DEVICE),
    "GPU 3D gamma + noise + bias field, batch of 4": lambda: g_workload("3d-intensity", GPU_DEVICE),
    "GPU 2D 12-band dihedral, batch of 8": lambda: g_workload("2d-dihedral", GPU_DEVICE),
    "GPU 2D 12-band any-angle rotation, batch of 8": lambda: g_workload("2d-any", GPU_DEVICE),
}


WORKLOADS: dict[str, Callable[[], list[Row]]] = {
    "3D affine": w_affine,
    "3D elastic": lambda: w_elastic(False),
    "3D affine + elastic": lambda: w_elastic(True),
    "3D affine, 116-label atlas": w_atlas,
    "bias field": lambda: w_intensity("bias field"),
    "gamma": lambda: w_intensity("gamma"),
    "Rician noise": lambda: w_intensity("Rician noise"),
    "motion": lambda: w_intensity("motion"),
    "brain-mri preset": w_preset,
    "sliding-window inference (identity model)": w_sliding_window,
    "NormalizeIntensity": w_normalize,
    "CropForeground": w_crop_foreground,
    "LabelsToImage": w_labels_to_image,
    "2D 12-band dihedral": lambda: w_raster("dihedral"),
    "2D 12-band any-angle rotation": lambda: w_raster("any-angle rotation"),
    "2D 12-band spectral jitter": lambda: w_raster("spectral jitter"),
    "2D 12-band crop 512": lambda: w_raster("crop 512"),
    "2D 12-band affine + elastic, 1000 boxes": w_raster_boxes,
    "training DataLoader, 2 workers": w_loader,
    "3D 4 contrasts + label, affine + elastic": w_contrasts,
    "2D Sentinel-2 10 m + 20 m, rotate + crop 512": w_sentinel2,
    "2D sentinel2 preset, batch of 8 x 12x256^2 (BatchAugment)": w_batched_preset,
    "2D RGB 1024^2 JPEG compression": lambda: w_vision("jpeg"),
    "2D RGB 1024^2 colour jitter": lambda: w_vision("color"),
    "2D 12-band random resized crop 1024^2 -> 512^2": lambda: w_vision("crop"),
    **GPU_WORKLOADS,
}


#: Workloads whose issue set another target than the suite's (>= 3x the fastest peer, or within
#: 1.5x of the floor): the least fastest-peer / domainaug ratio that meets it, its wording, and the
#: factor over the floor that also meets it.
TARGETS: dict[str, tuple[float, str, float]] = {
    "2D RGB 1024^2 JPEG compression": (1 / 1.2, "at most 1.2x the fastest peer's time", 1.5),
    "2D RGB 1024^2 colour jitter": (2.0, ">= 2x faster than the fastest peer (Albumentations HueSaturationValue)",
                                    1.5),
    "2D 12-band random resized crop 1024^2 -> 512^2": (1 / 1.5, "at most 1.5x the fastest peer's time", 1.5),
    "sliding-window inference (identity model)": (1 / 1.2, "at most 1.2x MONAI's time", 0.0),  # peer only
    # the floor is the same pipeline without boxes: the boxes may add 5%
    "2D 12-band affine + elastic, 1000 boxes": (float("inf"), "the boxes add at most 5% (x floor <= 1.05)", 1.05),
    # the floor is the same preset run on each element alone: the batch must take at most half its time
    "2D sentinel2 preset, batch of 8 x 12x256^2 (BatchAugment)": (float("inf"), ">= 2x the per-element loop "
                                                                 "(x floor <= 0.5)", 0.5),
}


def run_workload(name: str, runs: int) -> list[dict]:
    """Warm-up, then ``runs`` interleaved rounds over the rows; transient memory of the first call."""
    rows = WORKLOADS[name]()
    out = []
    timed = [(i, r) for i, r in enumerate(rows) if r[2] is not None]
    peak = {}
    for i, (_tool, _version, call, _note) in timed:
        reset_peak()
        rss0, _ = rss_kb()
        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        _, hwm = rss_kb()
        peak[i] = max(0, hwm - rss0) / 1024
        if first < 1.0:
            call()
    times = {i: [] for i, _ in timed}
    for _ in range(runs):
        for i, (_tool, _version, call, _note) in timed:
            t0 = time.perf_counter()
            call()
            times[i].append(time.perf_counter() - t0)
    for i, (tool, version, call, note) in enumerate(rows):
        row = {"workload": name, "tool": tool, "version": version, "note": note}
        if name in GPU_WORKLOADS:
            row["device"] = str(GPU_DEVICE) + (f" ({torch.cuda.get_device_name(GPU_DEVICE)})"
                                               if GPU_DEVICE.type == "cuda" else "")
        if call is not None:
            per = getattr(call, "samples", 1)                # calls that process several samples
            row.update(median_ms=1e3 * float(np.median(times[i])) / per, min_ms=1e3 * min(times[i]) / per,
                       peak_mb=peak[i])
        out.append(row)
    return out


def _gpu_line(rows: list[dict]) -> str:
    gpu = [r for r in rows if r["workload"].startswith("GPU ")]
    if not gpu:
        return "GPU section: not run (no CUDA device here)."
    device = gpu[0].get("device", "?")
    return (f"GPU section: {device}, batches, same peers where they run on a GPU." if device.startswith("cuda")
            else f"GPU section run on {device}: a check of its code path, not a measurement.")


def summarise(rows: list[dict], date: str | None = None) -> tuple[list[str], dict]:
    lines = [f"# Peer benchmark suite ({date or time.strftime('%Y-%m-%d %H:%M')})", "",
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores seen, {THREADS} threads, "
             f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} for every tool; "
             f"Python {platform.python_version()}, torch {torch.__version__}. Each workload ran in its own process; "
             "rows interleaved within it; times per sample. `x fastest peer` < 1 means domainaug is faster.",
             "", _gpu_line(rows), ""]
    verdicts = {}
    summary = ["| workload | domainaug median (min) ms | fastest peer, median ms | peer / domainaug | x floor "
               "| target |",
               "|---|---:|---|---:|---:|---|"]
    for name in list(WORKLOADS) + [n for n in dict.fromkeys(r["workload"] for r in rows) if n not in WORKLOADS]:
        group = [r for r in rows if r["workload"] == name]
        if not group:
            continue
        floor = next((r["median_ms"] for r in group if r["tool"] == "floor"), None)
        timed = [r for r in group
                 if r["tool"] != "floor" and not r["tool"].startswith("domainaug") and "median_ms" in r]
        best = min(timed, key=lambda r: r["median_ms"]) if timed else None
        fastest = best["median_ms"] if best else None
        lines += [f"## {name}", "",
                  "| tool | version | median ms | min ms | x fastest peer | x floor | peak MB | note |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in group:
            if "median_ms" not in r:
                lines.append(f"| {r['tool']} | {r['version']} | — | — | — | — | — | cannot: {r['note']} |")
                continue
            vs_peer = f"{r['median_ms'] / fastest:.2f}" if fastest and r["tool"] != "floor" else ""
            vs_floor = f"{r['median_ms'] / floor:.2f}" if floor else ""
            lines.append(f"| {r['tool']} | {r['version']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {vs_peer} | "
                         f"{vs_floor} | {r['peak_mb']:.0f} | {r['note']} |")
        ours = next((r for r in group if r["tool"] == "domainaug"), None)
        if ours is not None and "median_ms" in ours:
            speedup = fastest / ours["median_ms"] if fastest else None
            need, wording, floor_factor = TARGETS.get(name, (3.0, ">= 3x faster than the fastest peer", 1.5))
            near_floor = floor is not None and ours["median_ms"] <= floor_factor * floor
            if speedup is None and not near_floor and name not in TARGETS:
                lines += ["", "Target: n/a (no peer does this work; the floor is a single copy)."]
                lines.append("")
                continue
            verdicts[name] = {"speedup_vs_fastest_peer": speedup,
                              "x_floor": ours["median_ms"] / floor if floor else None,
                              "met": bool((speedup is not None and speedup >= need) or near_floor)}
            summary.append(f"| {name} | {ours['median_ms']:.1f} ({ours['min_ms']:.1f}) | "
                           + (f"{best['tool']}, {fastest:.1f} | {speedup:.1f}x" if best else "none | ") + " | "
                           + (f"{ours['median_ms'] / floor:.2f}" if floor else "") + " | "
                           + ("met" if verdicts[name]["met"] else "**not met**") + " |")
            lines += ["", f"Target ({wording}" + (f", or within {floor_factor}x of the floor" if floor_factor else "")
                      + "): " +
                      ("MET" if verdicts[name]["met"] else "NOT MET") +
                      (f" (fastest peer / domainaug = {speedup:.1f}x" if speedup else " (no peer timed") +
                      (f", {ours['median_ms'] / floor:.2f}x floor)." if floor else ").")]
        lines.append("")
    lines[4:4] = ["## Summary", "", "Target: at least 3x faster than the fastest peer, or within 1.5x of the floor "
                  "measured in the same process (a workload's own target where its issue set one: TARGETS).",
                  ""] + summary + [""]
    return lines, verdicts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--only", nargs="*", default=None, help="workload names (default: all)")
    parser.add_argument("--workload", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--render", action="store_true",
                        help="only rewrite results/latest.md from results/latest.json (after a format change)")
    args = parser.parse_args()
    if args.runs < 5:
        parser.error("--runs must be >= 5")
    if args.workload:                                   # child process: one workload
        print(json.dumps(run_workload(args.workload, args.runs)))
        return 0
    if args.render:
        saved = json.loads((RESULTS / "latest.json").read_text(encoding="utf-8"))
        args.runs = saved["runs"]
        date = saved.get("date") or time.strftime("%Y-%m-%d %H:%M",
                                                  time.localtime((RESULTS / "latest.json").stat().st_mtime))
        return _write(saved["rows"], args, date)
    rows = []
    for name in args.only or WORKLOADS:
        print(f"... {name}", flush=True)
        out = subprocess.run([sys.executable, __file__, "--workload", name, "--runs", str(args.runs)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            rows.append({"workload": name, "tool": "domainaug", "version": da.__version__,
                         "note": f"the workload failed: {out.stderr.strip().splitlines()[-1] if out.stderr else '?'}"})
            continue
        rows.extend(json.loads(out.stdout.strip().splitlines()[-1]))
    return _write(rows, args, time.strftime("%Y-%m-%d %H:%M"))


def _write(rows: list[dict], args, date: str) -> int:
    lines, verdicts = summarise(rows, date)
    met = sum(v["met"] for v in verdicts.values())
    lines.insert(4, f"Targets met on {met} of {len(verdicts)} workloads.\n")
    lines.insert(4, f"Reproduce: `make bench`, or `.venv/bin/python benchmarks/suite.py --runs {args.runs}`.\n")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = "latest" if not args.only else "partial"       # a partial run never replaces the full table
    (RESULTS / f"{stem}.md").write_text(text, encoding="utf-8")
    (RESULTS / f"{stem}.json").write_text(json.dumps({"date": date, "threads": THREADS, "runs": args.runs,
                                                      "rows": rows, "verdicts": verdicts}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
