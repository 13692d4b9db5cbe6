"""Names the docstring examples of domainaug use, for ``pytest --doctest-modules domainaug``
(``make test``): ``sample`` (the shipped T1 + labels, with a ``landmarks`` point set), ``raster``
(the shipped RGBN crop, bands named), ``model`` (a stand-in network: ``(C or B, ...)`` -> two
channels), ``torch``, ``da``, ``md``, ``rs``, ``dio`` and every registered transform by name."""

from typing import Any

import pytest


@pytest.fixture(scope="session", autouse=True)
def _doctest_names(request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("doctestmodules", False):
        return
    namespace: dict[str, Any] = request.getfixturevalue("doctest_namespace")
    import torch

    import domainaug as da
    import domainaug.io as dio
    from domainaug import data
    from domainaug import medical as md
    from domainaug import remote_sensing as rs

    torch.set_num_threads(2)
    sample = dio.load(data.path(data.T1), label=data.path(data.T1_LABELS))
    centre = torch.tensor(sample.space.index_to_world(torch.tensor([[64.0, 64.0, 31.0]], dtype=torch.float64).numpy()))
    sample = sample.replace(points={"landmarks": centre})
    raster = rs.set_bands(dio.load(data.path(data.RGBN)), ["blue", "green", "red", "nir"], sensor="aerial-rgbn")

    def model(x: torch.Tensor) -> torch.Tensor:
        """Two channels (x, 1 - x) from one: on ``(C, *spatial)`` or a batch ``(B, C, *spatial)`` of volumes."""
        return torch.cat([x, 1 - x], dim=x.dim() - 4)

    namespace.update({"torch": torch, "da": da, "dio": dio, "md": md, "rs": rs, "data": data,
                      "sample": sample, "raster": raster, "model": model, "generator_for": da.generator_for})
    namespace.update(da.Transform.registry)
