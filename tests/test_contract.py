"""The contract, over every transform the library registers and both domains; each transform
declares its case in its own class (``contract_case``)."""

import numpy as np
import pytest
import torch

import domainaug as da
from domainaug.testing import (
    check_bad_arguments,
    check_batched,
    check_batched_samples,
    check_boxes_follow,
    check_dtypes,
    check_identity,
    check_inverse,
    check_no_new_labels,
    check_points_follow,
    check_replay_json,
    check_same_seed,
    check_valid_values,
    declared_cases,
    library_transforms,
    make_raster,
    make_volume,
    missing_case,
    with_image_dtype,
)

LIBRARY = library_transforms()
NAMES = sorted(LIBRARY)
CASES = declared_cases(LIBRARY)
SAMPLES = {
    "volume": lambda: make_volume(),
    "oblique-int16": lambda: make_volume(direction=np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float), dtype=np.int16,
                                         label_mode="argmax"),
    "raster-nodata": lambda: make_raster(),
}


COMBOS = [(n, k) for n in NAMES for k in sorted(SAMPLES) if n in CASES and k in CASES[n].kinds]


def case(name):
    if name not in CASES:
        pytest.fail(missing_case(LIBRARY[name]))
    return CASES[name]


def test_every_library_transform_declares_its_case():
    missing = [missing_case(LIBRARY[n]) for n in NAMES if n not in CASES]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("name, kind", COMBOS)
def test_same_seed_same_output(name, kind):
    sample = SAMPLES[kind]()
    check_same_seed(CASES[name].random(sample), sample)


@pytest.mark.parametrize("name, kind", COMBOS)
def test_json_records_replay_bit_for_bit(name, kind):
    sample = SAMPLES[kind]()
    check_replay_json(CASES[name].random(sample), sample)


@pytest.mark.parametrize("name, kind", COMBOS)
def test_identity_parameters_change_nothing(name, kind):
    sample = SAMPLES[kind]()
    check_identity(CASES[name].identity(sample), sample)


@pytest.mark.parametrize("name, kind", COMBOS)
def test_no_new_labels_and_dtypes_kept(name, kind):
    sample = SAMPLES[kind]()
    t = CASES[name].random(sample)
    check_no_new_labels(t, sample)
    check_dtypes(t, sample)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("name, kind", COMBOS)
def test_float_in_same_float_out_and_no_nan_in_valid_voxels(name, kind, dtype):
    sample = with_image_dtype(SAMPLES[kind](), dtype)
    check_valid_values(CASES[name].random(sample), sample)


@pytest.mark.parametrize("name, kind", COMBOS)
def test_world_points_follow_content(name, kind):
    sample = SAMPLES[kind]()
    check_points_follow(CASES[name].random(sample), sample)


@pytest.mark.parametrize("name, kind", COMBOS)
def test_world_boxes_follow_content(name, kind):
    sample = SAMPLES[kind]()
    check_boxes_follow(CASES[name].random(sample), sample)


@pytest.mark.parametrize("name", NAMES)
def test_bad_arguments_name_themselves(name):
    assert case(name).bad, f"{name} has no bad-argument case"
    check_bad_arguments(case(name))


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips(name):
    sample = make_raster()
    t = case(name).random(sample)
    again = da.transform_from_dict(t.to_dict())
    assert again.to_dict() == t.to_dict()


@pytest.mark.parametrize("name, kind", COMBOS)
def test_inverse_of_the_spatial_record_undoes_it(name, kind):
    sample = SAMPLES[kind]()
    check_inverse(CASES[name].random(sample), sample)


@pytest.mark.parametrize("name, kind", COMBOS)
def test_a_batch_equals_its_elements_alone(name, kind):
    sample = SAMPLES[kind]()
    if set(sample.layer_names()) - {"image", "label", "valid"}:      # more layers than the tensor call carries
        check_batched_samples(CASES[name].random(sample), sample)
    else:
        check_batched(CASES[name].random(sample), sample)
