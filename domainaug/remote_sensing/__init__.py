"""Remote sensing: georeferenced, nodata-aware, band-aware augmentation of multispectral rasters.

Built on the core only: the transforms here are ``Transform`` subclasses and every resampling goes
through the core resampler. I/O is ``domainaug.io`` (rasterio); ``tiles`` reads large rasters
window by window.
"""

from .bands import SENSORS, Band, Sensor, sensor, sensors
from .presets import preset, presets
from .rotation import RotationPolicy
from .tiles import TileWriter, classification_patches, tile_windows, tiles
from .spectral import (INDICES, AppendIndex, BandDropout, CloudShadow, Haze, SpectralJitter, layer_bands, set_bands,
                       spectral_index)

__all__ = ["preset", "presets", "SpectralJitter", "Haze", "BandDropout", "CloudShadow", "AppendIndex",
           "RotationPolicy", "spectral_index", "INDICES", "set_bands", "layer_bands", "sensor", "sensors", "SENSORS",
           "Band", "Sensor", "tiles", "tile_windows", "TileWriter", "classification_patches"]
