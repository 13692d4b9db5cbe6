"""Hydra / OmegaConf: transforms take OmegaConf containers as arguments (``ListConfig`` where a
list is accepted, ``DictConfig`` where a dict is), so ``hydra.utils.instantiate`` builds them
without ``_convert_``, and pipelines load from a config tree."""

import collections

import pytest
import torch

import domainaug as da
from domainaug.core.params import as_builtin
from domainaug.testing import assert_samples_equal, declared_cases, library_transforms, make_raster, make_volume

omegaconf = pytest.importorskip("omegaconf")
hydra_utils = pytest.importorskip("hydra.utils")
OmegaConf = omegaconf.OmegaConf

LIBRARY = library_transforms()
CASES = declared_cases(LIBRARY)


def target(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def test_instantiate_affine_with_a_list_config_without_convert():
    cfg = OmegaConf.create({"_target_": "domainaug.Affine", "degrees": [-10, 10], "translation": [[-2, 2], [0, 0],
                                                                                                    [-1, 1]]})
    assert isinstance(cfg.degrees, omegaconf.ListConfig)
    t = hydra_utils.instantiate(cfg)
    assert t.config() == da.Affine(degrees=(-10, 10), translation=[(-2, 2), (0, 0), (-1, 1)]).config()
    s = make_volume()
    assert_samples_equal(t(s, torch.Generator().manual_seed(3)),
                         da.Affine(degrees=(-10, 10), translation=[(-2, 2), (0, 0), (-1, 1)])(
                             s, torch.Generator().manual_seed(3)))


def test_a_dict_config_where_a_dict_is_accepted():
    # Affine's per-world-axis degrees: {"slice": (min, max)}
    cfg = OmegaConf.create({"_target_": "domainaug.Affine", "degrees": {"slice": [-15, 15]}})
    assert isinstance(cfg.degrees, omegaconf.DictConfig)
    assert hydra_utils.instantiate(cfg).config() == da.Affine(degrees={"slice": (-15, 15)}).config()


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_contract_case_instantiates_from_its_config_through_target(name):
    cls = LIBRARY[name]
    sample = make_volume() if "volume" in CASES[name].kinds else make_raster()
    t = CASES[name].random(sample)
    cfg = OmegaConf.create({"_target_": target(cls), **t.config()})
    built = hydra_utils.instantiate(cfg)
    assert type(built) is cls and built.to_dict() == t.to_dict()
    assert_samples_equal(built(sample, torch.Generator().manual_seed(5)), t(sample, torch.Generator().manual_seed(5)))
    # the library's own loader takes the same tree as a DictConfig
    assert da.transform_from_dict(OmegaConf.create(t.to_dict())).to_dict() == t.to_dict()


def test_a_pipeline_tree_of_targets_with_a_schedule():
    yaml = """
    pipeline:
      _target_: domainaug.Compose
      transforms:
        - _target_: domainaug.Affine
          degrees: [-10, 10]
          scales: [0.9, 1.1]
        - _target_: domainaug.Flip
          axes: [0]
          p: {schedule: linear, start: 0.0, end: 1.0, epochs: 4}
        - _target_: domainaug.Gamma
          gamma: [0.8, 1.25]
    """
    cfg = OmegaConf.create(yaml)
    pipeline = hydra_utils.instantiate(cfg.pipeline)
    plain = da.Compose([da.Affine(degrees=(-10, 10), scales=(0.9, 1.1)),
                        da.Flip(axes=(0,), p=da.Schedule.linear(0.0, 1.0, 4)), da.Gamma(gamma=(0.8, 1.25))])
    assert pipeline.to_dict() == plain.to_dict()
    pipeline.set_epoch(2)
    plain.set_epoch(2)
    assert pipeline.transforms[1].p == 0.5
    s = make_volume()
    assert_samples_equal(pipeline(s, torch.Generator().manual_seed(1)), plain(s, torch.Generator().manual_seed(1)))


def test_a_pipeline_yaml_in_the_library_format_loads_from_a_config_node():
    doc = OmegaConf.create({"aug": da.Compose([da.Affine(degrees=(-5, 5)), da.Gamma((0.9, 1.1))]).to_dict()})
    assert isinstance(doc.aug, omegaconf.DictConfig)
    assert da.transform_from_dict(doc.aug).to_dict() == OmegaConf.to_container(doc.aug)
    assert da.Compose.from_dict(doc.aug).to_dict() == OmegaConf.to_container(doc.aug)


def test_as_builtin_converts_any_sequence_and_mapping_and_keeps_the_rest():
    inner = OmegaConf.create({"a": [1, {"b": [2, 3]}]})
    assert as_builtin(inner) == {"a": [1, {"b": [2, 3]}]} and type(as_builtin(inner)["a"][1]) is dict
    assert as_builtin(collections.UserList([1, 2])) == [1, 2] and as_builtin(range(2)) == [0, 1]
    assert as_builtin((1, collections.UserList([2]))) == (1, [2])
    plain = [1, (2, 3), {"x": "abc"}]
    assert as_builtin(plain) is plain                      # nothing to convert: the same object
    tensor = torch.zeros(2)
    assert as_builtin(tensor) is tensor and as_builtin("abc") == "abc"
