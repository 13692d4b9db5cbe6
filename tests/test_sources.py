"""What ``load`` and ``tiles`` take besides local paths (``domainaug.io.sources``): image objects
(nibabel, SimpleITK, open rasterio datasets) read as their files are, remote Cloud-Optimised GeoTIFFs
read window by window over HTTP range requests (a local server that counts the bytes it sends),
GDAL's ``/vsimem/``; and a bare tensor given to a transform is refused with the way to wrap it."""

from __future__ import annotations

import itertools
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import rasterio
import rasterio.io
import torch
from rasterio.enums import Resampling

import domainaug as da
from domainaug import data
from domainaug.io import load, save
from domainaug.io.sources import as_source, is_remote, name_of, object_kind
from domainaug.remote_sensing.tiles import tiles


def assert_same_sample(a: da.Sample, b: da.Sample, *, path: bool = True) -> None:
    """Same grid, CRS, layers (data, dtype, role, fill, channels) and per-layer metadata."""
    assert a.space.same_grid(b.space, tolerance=0) and a.space.crs == b.space.crs
    assert a.layer_names() == b.layer_names()
    for name in a.layer_names():
        la, lb = a.layer_info(name), b.layer_info(name)
        assert la.data.dtype == lb.data.dtype and torch.equal(la.data, lb.data), name
        assert (la.role, la.fill, la.channels) == (lb.role, lb.fill, lb.channels), name
    skip = {"path"} if not path else set()
    layers_a = {n: {k: v for k, v in m.items() if k not in skip} for n, m in a.meta["layers"].items()}
    layers_b = {n: {k: v for k, v in m.items() if k not in skip} for n, m in b.meta["layers"].items()}
    assert layers_a == layers_b
    assert {k: v for k, v in a.meta.items() if k not in skip | {"layers"}} == \
        {k: v for k, v in b.meta.items() if k not in skip | {"layers"}}


# --- objects ----------------------------------------------------------------------------------------

def test_a_nibabel_image_loads_as_its_file():
    t1, labels = data.path(data.T1), data.path(data.T1_LABELS)
    from_file = load(t1, label=labels)
    from_objects = load(nib.load(str(t1)), label=nib.load(str(labels)))
    assert_same_sample(from_objects, from_file)            # nibabel knows the file: the same path too
    assert from_objects.meta["layers"]["image"]["qform_code"] == from_file.meta["layers"]["image"]["qform_code"]


def test_an_in_memory_nibabel_image_keeps_its_affine_codes_and_scaling():
    values = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    affine = np.array([[-2.0, 0, 0, 10], [0, 3.0, 0, -5], [0, 0, 1.5, 2], [0, 0, 0, 1]])
    img = nib.Nifti1Image(values, affine)
    img.header.set_slope_inter(0.5, 10.0)
    img.header.set_qform(affine, code=1)
    sample = load(img)
    assert name_of(img) == "<nibabel.Nifti1Image>" and sample.meta["path"] == "<nibabel.Nifti1Image>"
    np.testing.assert_allclose(sample.space.affine, affine)
    meta = sample.meta["layers"]["image"]
    assert (meta["qform_code"], meta["sform_code"]) == (1, 2)
    # nibabel applies a header's scaling to arrays it reads from files, not to an in-memory array
    np.testing.assert_array_equal(sample["image"][0].numpy(), values.astype(np.float32))


def test_a_simpleitk_image_loads_as_its_file(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    t1 = load(data.path(data.T1))
    path = save(t1, tmp_path / "t1.nrrd")
    from_file = load(path)
    image = sitk.ReadImage(str(path))
    from_object = load(image)
    assert_same_sample(from_object, from_file, path=False)
    assert from_object.meta["path"] == "<SimpleITK.Image>"
    # and the scan itself: ITK's LPS and (z, y, x) arrays come back as the NIfTI's grid and values
    assert from_object.space.same_grid(t1.space, tolerance=1e-5)
    assert torch.equal(from_object["image"], t1["image"])


def test_an_open_rasterio_dataset_loads_as_its_file_and_stays_open():
    path = data.path(data.RGBN)
    from_file = load(path)
    with rasterio.open(path) as src:
        from_object = load(src)
        assert not src.closed
        src.read(1, window=((0, 1), (0, 1)))                # still usable
    assert_same_sample(from_object, from_file)
    assert from_object.layer_info("image").fill == 0.0 and "valid" in from_object.layer_names()   # nodata 0 kept
    assert from_object.meta["layers"]["image"]["crs"] == "EPSG:32618"


def test_object_kinds_are_told_apart_without_importing_anything():
    assert object_kind("x.nii.gz") is None and object_kind(Path("x.tif")) is None
    assert object_kind(np.zeros(3)) is None and object_kind(torch.zeros(3)) is None
    with rasterio.open(data.path(data.RGBN)) as src:
        assert object_kind(src) == "geotiff" and name_of(src) == str(data.path(data.RGBN))
    with pytest.raises(da.ParameterError, match=r"^path='ndarray' is invalid: .*nibabel image"):
        load(np.zeros((4, 4)))


@pytest.mark.parametrize("value", [torch.zeros(1, 8, 8), np.zeros((1, 8, 8), np.float32)])
def test_a_transform_given_a_bare_array_says_how_to_wrap_it(value):
    for transform in (da.Flip(axes=(0,)), da.Compose([da.Flip(axes=(0,)), da.GaussianNoise(0.1)])):
        with pytest.raises(da.ParameterError, match=r"^sample='(Tensor|ndarray)' is invalid: .*Sample\.from_numpy"):
            transform(value)
    # and the hint works: the wrapped array goes through
    out = da.Flip(axes=(0,))(da.Sample.from_numpy(np.arange(64, dtype=np.float32).reshape(1, 8, 8), spacing=(1, 1)))
    assert torch.equal(out["image"], torch.arange(64, dtype=torch.float32).reshape(1, 8, 8).flip(1))


def test_a_transform_given_a_dict_names_the_adapters():
    with pytest.raises(da.ParameterError, match=r"^sample='dict' is invalid: .*TorchGeoTransform"):
        da.Flip(axes=(0,))({"image": torch.zeros(3, 8, 8)})


# --- remote and virtual paths -----------------------------------------------------------------------

def test_urls_and_vsi_paths_are_kept_as_strings():
    for url in ("https://example.com/a/b.tif", "/vsicurl/https://example.com/b.tif", "/vsis3/bucket/key.tif",
                "/vsimem/x.tif", "s3://bucket/key.tif", "HTTP://EXAMPLE.COM/B.TIF"):
        assert is_remote(url) and as_source(url) == url
    assert not is_remote("data/b.tif") and as_source("data/b.tif") == Path("data/b.tif")
    assert not is_remote(Path("/vsimem/x.tif"))             # a Path is a local path
    # a URL that went through pathlib (https:// -> https:/) is named, with the way out
    with pytest.raises(da.ParameterError, match=r"^path=.https:/example.com/b.tif. is invalid: expected a URL as a"):
        load(Path("https://example.com/b.tif"))
    with pytest.raises(da.ParameterError, match=r"a local path for NIfTI and ITK files"):
        load("https://example.com/t1.nii.gz")
    with pytest.raises(da.ParameterError, match=r"^path='/vsimem/out.tif' is invalid: expected a local file path"):
        save(load(data.path(data.RGBN)), "/vsimem/out.tif")      # never a local folder named /vsimem


def test_a_vsimem_raster_loads_and_tiles_as_the_file():
    path = data.path(data.RGBN)
    with rasterio.io.MemoryFile(path.read_bytes(), filename="rgbn.tif") as memory:    # the file's bytes, in GDAL memory
        vsi = memory.name
        assert vsi.startswith("/vsimem/")
        assert_same_sample(load(vsi), load(path), path=False)
        assert load(vsi).meta["path"] == vsi
        local, remote = list(tiles(path, 64)), list(tiles(vsi, 64))
        assert len(local) == len(remote) > 1
        for a, b in zip(local, remote):
            assert_same_sample(a, b, path=False)


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves one file with ``Range: bytes=a-b`` support (Python's SimpleHTTPRequestHandler has
    none), counting the bytes it sends."""

    body = b""
    sent: list[int] = []
    ranges: list[str] = []

    def _send(self, head_only: bool) -> None:
        body = type(self).body
        header = self.headers.get("Range")
        if header:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", header.strip())
            if not match:
                self.send_error(416)
                return
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else len(body) - 1, len(body) - 1)
            if start >= len(body):
                self.send_error(416)
                return
            chunk = body[start:end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
            type(self).ranges.append(header)
        else:
            chunk = body
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if not head_only:
            self.wfile.write(chunk)
            type(self).sent.append(len(chunk))

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self._send(head_only=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(head_only=True)

    def log_message(self, *args: object) -> None:   # quiet
        pass


def _make_cog(tmp_path: Path) -> Path:
    """The shipped raster upsampled 8x (4 x 1696 x 2208 uint8, about 15 MB uncompressed) as a COG
    with 256-pixel tiles and overviews, so that a window is a small fraction of the file."""
    src_path = data.path(data.RGBN)
    with rasterio.open(src_path) as src:
        scale = 8
        big = src.read(out_shape=(src.count, src.height * scale, src.width * scale), resampling=Resampling.bilinear)
        profile = {"driver": "COG", "dtype": "uint8", "count": src.count, "height": big.shape[1],
                   "width": big.shape[2], "crs": src.crs, "nodata": src.nodata, "blocksize": 256,
                   "compress": "none", "overviews": "auto",
                   "transform": src.transform * src.transform.scale(1 / scale, 1 / scale)}
    path = tmp_path / "rgbn_big_cog.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(big)
    return path


@pytest.fixture
def cog_server(tmp_path, monkeypatch):
    path = _make_cog(tmp_path)
    handler = type("Handler", (_RangeHandler,), {"body": path.read_bytes(), "sent": [], "ranges": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")      # no directory listing requests
    monkeypatch.setenv("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", ".tif")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    try:
        yield path, f"http://127.0.0.1:{server.server_address[1]}/{path.name}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_tiles_of_a_remote_cog_are_read_by_range_requests(cog_server):
    path, url, handler = cog_server
    size = path.stat().st_size
    assert size > 10 * 2**20
    # the GDAL virtual path, and the plain URL (another path on the server: GDAL caches what it fetched per URL)
    for remote in ("/vsicurl/" + url, url.replace("/rgbn", "/again/rgbn")):
        handler.sent.clear()
        first = list(itertools.islice(tiles(remote, 256), 2))
        local = list(itertools.islice(tiles(path, 256), 2))
        assert len(first) == len(local) == 2
        for a, b in zip(first, local):
            assert_same_sample(a, b, path=False)
            assert a.meta["path"] == remote and a.meta["window"] == b.meta["window"]
        fetched = sum(handler.sent)
        assert handler.ranges, "GDAL read the file without range requests"
        # two 256 x 256 x 4 tiles are 512 kB of the 15 MB: the header and those tiles, not the file
        assert 2 * 256 * 256 * 4 <= fetched < 0.15 * size, (fetched, size)
        print(f"{remote}: {fetched} of {size} bytes in {len(handler.ranges)} range requests")
        handler.ranges.clear()


def test_load_of_a_remote_cog_equals_the_local_file(cog_server):
    path, url, handler = cog_server
    assert_same_sample(load("/vsicurl/" + url), load(path), path=False)
    assert load(url).meta["path"] == url                 # not 'http:/127.0.0.1...'
