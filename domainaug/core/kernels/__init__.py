"""Kernels: index/world math (grid), matrices (affine), control-point fields (elastic), map
composition (fuse) and the one resampler (resample)."""
