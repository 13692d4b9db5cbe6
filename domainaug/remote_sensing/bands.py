"""Sensor band tables: names, centre wavelengths, widths, native resolutions, common names.

Common names follow the STAC ``eo`` extension (``coastal``, ``blue``, ``green``, ``red``,
``rededge``, ``nir``, ``nir08``, ``nir09``, ``cirrus``, ``swir16``, ``swir22``, ``pan``,
``lwir``, ``lwir11``, ``lwir12``) so that spectral indices can be written once for every sensor.
Wavelengths and widths are nominal values in nm (Sentinel-2A MSI; Landsat 8/9 OLI/TIRS; Landsat 7
ETM+); ``resolution_m`` is the native ground sampling distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import ParameterError

__all__ = ["Band", "Sensor", "SENSORS", "sensor", "sensors", "resolve_bands"]


@dataclass(frozen=True)
class Band:
    name: str
    common: str
    center_nm: float
    width_nm: float
    resolution_m: float | None


@dataclass(frozen=True)
class Sensor:
    name: str
    bands: tuple[Band, ...]

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.bands]

    def band(self, name: str) -> Band:
        """A band by its name (``"B04"``) or its common name (``"red"``)."""
        for b in self.bands:
            if name in (b.name, b.common):
                return b
        raise ParameterError("band", name, f"a {self.name} band: {', '.join(self.names)} "
                             f"(or a common name: {', '.join(sorted({b.common for b in self.bands}))})")

    def select(self, names: Sequence[str]) -> list[Band]:
        return [self.band(n) for n in names]


def _table(name: str, rows: list[tuple]) -> Sensor:
    return Sensor(name, tuple(Band(*row) for row in rows))


SENSORS: dict[str, Sensor] = {
    "sentinel2": _table("sentinel2", [
        ("B01", "coastal", 442.7, 21, 60), ("B02", "blue", 492.4, 66, 10), ("B03", "green", 559.8, 36, 10),
        ("B04", "red", 664.6, 31, 10), ("B05", "rededge1", 704.1, 15, 20), ("B06", "rededge2", 740.5, 15, 20),
        ("B07", "rededge3", 782.8, 20, 20), ("B08", "nir", 832.8, 106, 10), ("B8A", "nir08", 864.7, 21, 20),
        ("B09", "nir09", 945.1, 20, 60), ("B10", "cirrus", 1373.5, 31, 60), ("B11", "swir16", 1613.7, 91, 20),
        ("B12", "swir22", 2202.4, 175, 20)]),
    "landsat8": _table("landsat8", [
        ("B1", "coastal", 443.0, 20, 30), ("B2", "blue", 482.0, 60, 30), ("B3", "green", 561.4, 57, 30),
        ("B4", "red", 654.6, 37, 30), ("B5", "nir08", 864.6, 28, 30), ("B6", "swir16", 1609.1, 85, 30),
        ("B7", "swir22", 2201.2, 187, 30), ("B8", "pan", 589.5, 172, 15), ("B9", "cirrus", 1373.4, 20, 30),
        ("B10", "lwir11", 10895.0, 590, 100), ("B11", "lwir12", 12005.0, 1010, 100)]),
    "landsat7": _table("landsat7", [
        ("B1", "blue", 483.0, 70, 30), ("B2", "green", 560.0, 80, 30), ("B3", "red", 662.0, 60, 30),
        ("B4", "nir", 835.0, 130, 30), ("B5", "swir16", 1648.0, 200, 30), ("B6", "lwir", 11335.0, 2100, 60),
        ("B7", "swir22", 2206.0, 260, 30), ("B8", "pan", 706.0, 380, 15)]),
    "aerial-rgbn": _table("aerial-rgbn", [
        ("blue", "blue", 480.0, 60, None), ("green", "green", 550.0, 60, None), ("red", "red", 660.0, 60, None),
        ("nir", "nir", 830.0, 100, None)]),
}
SENSORS["landsat9"] = Sensor("landsat9", SENSORS["landsat8"].bands)   # OLI-2/TIRS-2: the same bands


#: A band per common name (Sentinel-2 wavelengths first, then Landsat for pan and thermal).
COMMON: dict[str, Band] = {}
for _name in ("sentinel2", "landsat8", "landsat7"):
    for _band in SENSORS[_name].bands:
        COMMON.setdefault(_band.common, Band(_band.common, _band.common, _band.center_nm, _band.width_nm, None))


def sensors() -> list[str]:
    return sorted(SENSORS)


def sensor(name: str) -> Sensor:
    if name not in SENSORS:
        raise ParameterError("sensor", name, "one of " + ", ".join(sensors()))
    return SENSORS[name]


def resolve_bands(channels: Sequence[str] | None, sensor_name: str | None, layer: str = "image") -> list[Band]:
    """The ``Band`` of every channel of a layer: by the sensor's band names or by common names
    (common names need no sensor). A channel that matches nothing is an error naming it."""
    if not channels:
        raise ParameterError("channels", channels, f"band names on layer {layer!r} (see remote_sensing.set_bands)")
    table = sensor(sensor_name) if sensor_name else None
    out = []
    for ch in channels:
        if table is not None:
            out.append(table.band(ch))
        elif ch in COMMON:
            out.append(COMMON[ch])
        else:
            raise ParameterError("sensor", None, f"a sensor name to interpret band {ch!r} of layer {layer!r} "
                                 f"({', '.join(sensors())}), or common band names")
    return out
