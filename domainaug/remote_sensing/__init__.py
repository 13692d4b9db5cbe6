"""Remote sensing: georeferenced, nodata-aware, band-aware augmentation of multispectral rasters.

Built on the core only: the transforms here are ``Transform`` subclasses and every resampling goes
through the core resampler. I/O is ``domainaug.io`` (rasterio); ``tiles`` reads large rasters
window by window.
"""

from .bands import SENSORS, Band, Sensor, match_band, resolve_bands, sensor, sensors
from .color import ColorJitter, Compression, HueSaturation, rgb_bands, value_range_of
from .presets import preset, presets
from .rotation import RotationPolicy
from .spectral import (
                       INDICES,
                       AppendIndex,
                       BandDropout,
                       CloudShadow,
                       Haze,
                       SpectralJitter,
                       band_stats,
                       check_distinct_bands,
                       cloud_reflectance,
                       date_layers,
                       dates,
                       derived_layers,
                       layer_bands,
                       set_bands,
                       source_layers,
                       spectral_index,
                       stack_dates,
)
from .tiles import TileWriter, classification_patches, scene_stats, tile_windows, tiles

__all__ = ["preset", "presets", "SpectralJitter", "Haze", "BandDropout", "CloudShadow", "AppendIndex",
           "RotationPolicy", "spectral_index", "INDICES", "set_bands", "layer_bands", "sensor", "sensors", "SENSORS",
           "Band", "Sensor", "tiles", "tile_windows", "TileWriter", "classification_patches", "scene_stats",
           "resolve_bands", "match_band", "band_stats", "cloud_reflectance", "derived_layers", "source_layers",
           "dates", "date_layers", "stack_dates", "check_distinct_bands", "ColorJitter", "HueSaturation", "Compression",
           "rgb_bands", "value_range_of"]
