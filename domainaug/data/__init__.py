"""Small real files shipped inside the package, for the demo, the T1 experiment and examples.

Example:
    >>> from domainaug import data
    >>> data.path(data.T1).name
    'KmeansTest_T1UCharRaw.nii.gz'

The files, their sources and licences are listed in this folder's ``README.md``; each licence
file ships beside them.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

from ..errors import ParameterError

__all__ = ["T1", "T1_LABELS", "RGBN", "names", "path"]

T1 = "KmeansTest_T1UCharRaw.nii.gz"                      # a real T1 MRI of a head, 128x128x62, 2x2x3 mm
T1_LABELS = "KmeansTest_T1KmeansPrelimSegmentation.nii.gz"  # its k-means tissue classes
RGBN = "rgbn_suba.tif"                                   # blue/green/red/NIR aerial crop, 5 m, nodata 0

# Copies made when the package is imported from a zip archive; removed at exit.
_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def names() -> list[str]:
    """The shipped data files (``.nii.gz`` and ``.tif``), sorted."""
    return sorted(f.name for f in resources.files(__name__).iterdir() if f.name.endswith((".nii.gz", ".tif")))


def path(name: str) -> Path:
    """The file system path of a shipped data file, for ``domainaug.io.load``.

    Args:
        name: A file name from ``names()`` (``T1``, ``T1_LABELS``, ``RGBN``).

    Returns:
        The path inside the installed package (or an extracted copy when the package is zipped).

    Raises:
        ParameterError: ``name`` is not a shipped file.
    """
    available = names()
    if name not in available:
        raise ParameterError("name", name, "a shipped data file: " + ", ".join(available))
    resource = resources.files(__name__) / name
    if isinstance(resource, Path):
        return resource
    return _extracted.enter_context(resources.as_file(resource))
