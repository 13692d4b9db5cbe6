"""Sensor band tables: names, centre wavelengths, widths, native resolutions, common names.

Common names follow the STAC ``eo`` extension (``coastal``, ``blue``, ``green``, ``red``,
``rededge``, ``nir``, ``nir08``, ``nir09``, ``cirrus``, ``swir16``, ``swir22``, ``pan``,
``lwir``, ``lwir11``, ``lwir12``) so that spectral indices can be written once for every sensor.
Wavelengths and widths are nominal values in nm (Sentinel-2A MSI; Landsat 8/9 OLI/TIRS; Landsat 7
ETM+); ``resolution_m`` is the native ground sampling distance.

Band names (channel names, from GeoTIFF band descriptions or ``set_bands``) resolve to a sensor's
bands by these rules (``match_band``):

1. Case and surrounding spaces do not matter; an exact band name or common name wins (``"B8A"``,
   ``"red"``).
2. A product prefix ``SR_``, ``TOA_``, ``BOA_`` or ``L1C_``/``L2A_`` is dropped (``SR_B4`` -> ``B4``).
3. The rest splits into parts at ``_``, ``-``, ``.``, ``:`` or spaces. A part ``B<number>`` (with an
   ``A`` for Sentinel-2 ``B8A``) is the band id; zero padding does not matter (``B02`` = ``B2`` =
   ``B002``). A part that is a common name or an alias (``blue``, ``green``, ``red``, ``nir``,
   ``swir1`` = ``swir16``, ``swir2`` = ``swir22``, ``coastal``/``aerosol``, ``rededge1``-``3``,
   ``cirrus``, ``pan``, ``lwir``/``tir``, ...) is the common name. Other parts (``ST``, ``mean``)
   are ignored.
4. With a sensor, the id picks the band, and a common name beside it must agree (``B4_nir`` on
   Landsat-8, whose B4 is red, is an error: usually the wrong sensor). Without an id, the common
   name picks the sensor's band with that common name (``nir`` also finds ``nir08``); two
   candidates are an error.
5. Without a sensor only common names resolve (to nominal wavelengths, ``COMMON``); an id alone
   (``SR_B4``) needs the sensor.
6. ``None``, an empty name and ``band<N>`` (the placeholder ``domainaug.io`` gives a band without a
   description) are unnamed: ``resolve_bands`` refuses them with a message saying how to name them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ParameterError

__all__ = ["Band", "Sensor", "SENSORS", "COMMON", "sensor", "sensors", "resolve_bands", "match_band", "is_unnamed",
           "naming_hint"]


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


_PREFIX = re.compile(r"^(SR|TOA|BOA|L1C|L2A)[_\-\s]+", re.IGNORECASE)
_SPLIT = re.compile(r"[_\-.:\s]+")
_ID = re.compile(r"^B0*(\d+)(A?)$", re.IGNORECASE)
_UNNAMED = re.compile(r"^band\d+$", re.IGNORECASE)
#: Common-name aliases -> the STAC common names they may mean, in order of preference.
ALIASES: dict[str, tuple[str, ...]] = {
    "nir": ("nir", "nir08"), "swir1": ("swir16",), "swir2": ("swir22",), "aerosol": ("coastal",),
    "tir": ("lwir", "lwir11"), "thermal": ("lwir", "lwir11"), "lwir": ("lwir", "lwir11"),
}
#: Names of a group of bands: they resolve only where the sensor has one band of the group.
GROUPS: dict[str, tuple[str, ...]] = {"rededge": ("rededge1", "rededge2", "rededge3")}


def _band_id(token: str) -> str | None:
    m = _ID.match(token)
    return f"B{int(m.group(1))}{m.group(2).upper()}" if m else None


def _commons(token: str) -> tuple[str, ...] | None:
    token = token.lower()
    if token in GROUPS:
        return GROUPS[token]
    if token in ALIASES:
        return ALIASES[token]
    return (token,) if token in COMMON else None


def is_unnamed(name: str | None) -> bool:
    """``None``, empty, or the ``band<N>`` placeholder of a band without a description."""
    return name is None or not str(name).strip() or bool(_UNNAMED.match(str(name).strip()))


def match_band(name: str, table: Sensor | None) -> Band | None:
    """The band ``name`` stands for under the module's rules (``table`` ``None``: common names only);
    ``None`` when nothing matches. Contradictions and ambiguities raise ``ParameterError``."""
    text = str(name).strip()
    where = f"{table.name} band" if table is not None else "band"
    if table is not None:
        for b in table.bands:                                         # rule 1: exact, any case
            if text.lower() == b.name.lower():
                return b
    parts = [t for t in _SPLIT.split(_PREFIX.sub("", text)) if t]
    ids = sorted({i for i in map(_band_id, parts) if i is not None})
    commons = [c for c in map(_commons, parts) if c is not None]
    if len(ids) > 1 or len({c for c in commons}) > 1:
        raise ParameterError("bands", name, f"one band per name; {name!r} names several ({', '.join(parts)})")
    if table is None:
        if commons:
            return COMMON[commons[0][0]]
        return None
    if ids:
        found = [b for b in table.bands if _band_id(b.name) == ids[0]]
        if not found:
            return None
        band = found[0]
        if commons and band.common not in commons[0]:
            raise ParameterError("bands", name, f"a name that agrees with the sensor: {table.name} {band.name} is "
                                 f"{band.common}, but {name!r} says {commons[0][0]} (is the sensor right?)")
        return band
    if commons:
        for wanted in commons[0] if commons[0] not in GROUPS.values() else [commons[0]]:
            group = (wanted,) if isinstance(wanted, str) else wanted
            found = [b for b in table.bands if b.common in group]
            if len(found) > 1:
                raise ParameterError("bands", name, f"an unambiguous {where}: {name!r} is ambiguous "
                                     f"({', '.join(b.name for b in found)})")
            if found:
                return found[0]
    return None


def naming_hint(count: int, sensor_name: str | None) -> str:
    """How to name ``count`` bands: the Python call and the command-line flag, with example names."""
    if sensor_name is not None and sensor_name in SENSORS:
        example, sensor_text = SENSORS[sensor_name].names[:count], sensor_name
    else:
        example, sensor_text = SENSORS["sentinel2"].names[:count], "sentinel2"
    if len(example) < count:
        example = example + ["..."]
    listed = ", ".join(repr(n) for n in example)
    return (f"name them in file order, e.g. domainaug.remote_sensing.set_bands(sample, [{listed}], "
            f"sensor={sensor_text!r}) "
            f"or on the command line with --bands {','.join(example)} --sensor {sensor_text} "
            f"(band descriptions such as B02_blue, B1_blue or SR_B4 in the file are understood)")


def resolve_bands(channels: Sequence[str | None] | None, sensor_name: str | None, layer: str = "image") -> list[Band]:
    """The ``Band`` of every channel of a layer, by the rules in this module's docstring (remembered
    per channel names and sensor: every draw of a spectral op on every sample asks again).

    Raises:
        ParameterError: naming the channels that are unnamed (with how to name them), that match
            no band, or that contradict the sensor.
    """
    return list(_resolve_bands(None if channels is None else tuple(channels), sensor_name, layer))


@functools.lru_cache(maxsize=256)
def _resolve_bands(channels: tuple[str | None, ...] | None, sensor_name: str | None, layer: str) -> tuple[Band, ...]:
    if not channels:
        raise ParameterError("bands", channels, f"band names on layer {layer!r}: " + naming_hint(4, sensor_name))
    unnamed = [c for c in channels if is_unnamed(c)]
    if unnamed:
        raise ParameterError("bands", list(channels), f"named bands on layer {layer!r}, which has unnamed bands "
                             f"({', '.join(map(str, unnamed))}); " + naming_hint(len(channels), sensor_name))
    table = sensor(sensor_name) if sensor_name else None
    out: list[Band] = []
    missing: list[str | None] = []
    for ch in channels:
        band = match_band(str(ch), table)
        if band is None:
            missing.append(ch)
        else:
            out.append(band)
    if missing and table is not None:
        raise ParameterError("bands", missing, f"{table.name} bands on layer {layer!r}: {', '.join(table.names)} "
                             f"(or common names: {', '.join(sorted({b.common for b in table.bands}))})")
    if missing:
        raise ParameterError("sensor", None, f"common band names, or a sensor to interpret band(s) "
                             f"{', '.join(map(repr, missing))} of layer {layer!r}: "
                             f"sensor= one of {', '.join(sensors())} "
                             f"(or sample.meta['sensor'], set by set_bands)")
    return tuple(out)
