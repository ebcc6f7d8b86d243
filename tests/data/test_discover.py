"""Discovery of image/label pairs in every supported layout, and every layout-level bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import make_pair, write_nifti

from imaseg.data.discover import discover, discover_with_info
from imaseg.data.errors import DataError


def write_case(root: Path, image_name: str, label_name: str, rng, shape=(24, 20, 6)) -> None:
    image, label = make_pair(rng, shape)
    if image_name:
        write_nifti(root / image_name, image)
    if label_name:
        write_nifti(root / label_name, label)


def make_nnunet(root: Path, rng, channels=1, cases=("ab_001", "ab_002")) -> Path:
    for case in cases:
        image, label = make_pair(rng)
        for c in range(channels):
            write_nifti(root / "imagesTr" / f"{case}_{c:04d}.nii.gz", image + c)
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", label)
    meta = {
        "channel_names": {str(c): name for c, name in zip(range(channels), ["T2", "ADC", "T1"])},
        "labels": {"background": 0, "peripheral": 1, "transition": 2},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
        "name": "Dataset042_Toy",
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


# ---------------------------------------------------------------------------------------------------------------
# layouts


def test_msd_layout(msd_folder):
    datalist, info = discover_with_info(msd_folder)
    assert info.layout == "msd"
    assert info.labels == {0: "background", 1: "a", 2: "b"}
    assert info.modality == "MRI"
    assert info.name == "toy"
    assert info.tensor_size == "3D"
    assert [e["case"] for e in datalist] == ["p01_frame01", "p01_frame09", "p02_frame01", "p02_frame11"]
    first = datalist[0]
    assert Path(first["image"]) == (msd_folder / "imagesTr" / "p01_frame01.nii.gz").resolve()
    assert Path(first["label"]) == (msd_folder / "labelsTr" / "p01_frame01.nii.gz").resolve()


def test_nnunet_single_channel(tmp_path, rng):
    root = make_nnunet(tmp_path / "Dataset042_Toy", rng)
    datalist, info = discover_with_info(root)
    assert info.layout == "nnunet"
    assert info.labels == {0: "background", 1: "peripheral", 2: "transition"}
    assert info.channels == {0: "T2"}
    assert [e["case"] for e in datalist] == ["ab_001", "ab_002"]
    assert datalist[0]["image"] == str(root / "imagesTr" / "ab_001_0000.nii.gz")
    assert datalist[0]["label"] == str(root / "labelsTr" / "ab_001.nii.gz")


def test_nnunet_two_channels_give_an_image_list(tmp_path, rng):
    root = make_nnunet(tmp_path / "Dataset043_Two", rng, channels=2)
    datalist, info = discover_with_info(root)
    assert info.channels == {0: "T2", 1: "ADC"}
    assert datalist[1]["image"] == [
        str(root / "imagesTr" / "ab_002_0000.nii.gz"),
        str(root / "imagesTr" / "ab_002_0001.nii.gz"),
    ]


def test_nnunet_missing_channel_names_the_case(tmp_path, rng):
    root = make_nnunet(tmp_path / "Dataset043_Two", rng, channels=2)
    (root / "imagesTr" / "ab_002_0001.nii.gz").unlink()
    with pytest.raises(DataError, match=r"case 'ab_002' has channels \[0\], dataset.json declares \[0, 1\]"):
        discover(root)


def test_nnunet_regions_in_labels_are_skipped(tmp_path, rng):
    root = make_nnunet(tmp_path / "Dataset044_Regions", rng)
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "whole": [1, 2], "core": 2}
    (root / "dataset.json").write_text(json.dumps(meta))
    assert discover_with_info(root)[1].labels == {0: "background", 2: "core"}


def test_nnunet_non_nifti_file_ending_is_refused(tmp_path, rng):
    root = make_nnunet(tmp_path / "Dataset045_Png", rng)
    meta = json.loads((root / "dataset.json").read_text())
    meta["file_ending"] = ".png"
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"file_ending '\.png' is not NIfTI"):
        discover(root)


@pytest.mark.parametrize(
    ("images", "labels", "image_suffix"),
    [("imagesTr", "labelsTr", ""), ("images", "labels", ""), ("imagesTr", "labelsTr", "_0000")],
    ids=["imagesTr-labelsTr", "images-labels", "suffix-0000"],
)
def test_plain_layouts(tmp_path, rng, images, labels, image_suffix):
    for case in ("case_b", "case_a"):
        write_case(tmp_path, f"{images}/{case}{image_suffix}.nii.gz", f"{labels}/{case}.nii.gz", rng)
    datalist, info = discover_with_info(tmp_path)
    assert info.layout == "plain"
    assert info.labels == {}
    assert [e["case"] for e in datalist] == ["case_a", "case_b"]
    assert datalist[0]["image"] == str(tmp_path / images / f"case_a{image_suffix}.nii.gz")
    assert datalist[0]["label"] == str(tmp_path / labels / "case_a.nii.gz")


def test_plain_layout_reads_label_names_from_a_json_without_training_list(tmp_path, rng):
    write_case(tmp_path, "imagesTr/x.nii.gz", "labelsTr/x.nii.gz", rng)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "lung"}}))
    datalist, info = discover_with_info(tmp_path)
    assert info.layout == "plain"
    assert info.labels == {0: "background", 1: "lung"}


def test_msd_2d_files(tmp_path, rng):
    root = tmp_path / "Task02_Xray"
    training = []
    for case in ("CHNCXR_0001", "MCUCXR_0002"):
        write_nifti(root / "imagesTr" / f"{case}.nii.gz", rng.integers(0, 255, (40, 30), dtype=np.uint8))
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", np.zeros((40, 30), np.uint8))
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    meta = {"tensorImageSize": "2D", "modality": {"0": "X-ray"}, "labels": {"0": "background", "1": "lung"}}
    (root / "dataset.json").write_text(json.dumps({**meta, "training": training}))
    datalist, info = discover_with_info(root)
    assert info.tensor_size == "2D"
    assert info.modality == "X-ray"
    assert [e["case"] for e in datalist] == ["CHNCXR_0001", "MCUCXR_0002"]


def test_dotfiles_are_ignored(tmp_path, rng):
    write_case(tmp_path, "imagesTr/a.nii.gz", "labelsTr/a.nii.gz", rng)
    (tmp_path / "imagesTr" / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "labelsTr" / "._a.nii.gz").write_bytes(b"AppleDouble")
    assert [e["case"] for e in discover(tmp_path)] == ["a"]


# ---------------------------------------------------------------------------------------------------------------
# bad input at the folder level: each raises a DataError naming the file(s)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="data folder does not exist") as info:
        discover(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_folder_without_layout(tmp_path):
    (tmp_path / "scans").mkdir()
    with pytest.raises(DataError, match=r"no imagesTr/ \+ labelsTr/, images/ \+ labels/ or dataset.json") as info:
        discover(tmp_path)
    assert info.value.paths == [str(tmp_path)]


def test_empty_image_and_label_folders(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    with pytest.raises(DataError, match="no image/label pairs found") as info:
        discover(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_unpaired_files_are_all_listed(tmp_path, rng):
    write_case(tmp_path, "imagesTr/ok.nii.gz", "labelsTr/ok.nii.gz", rng)
    write_case(tmp_path, "imagesTr/lonely_image.nii.gz", "", rng)
    write_case(tmp_path, "", "labelsTr/lonely_label.nii.gz", rng)
    with pytest.raises(DataError, match="do not pair up") as info:
        discover(tmp_path)
    message = str(info.value)
    assert f"Images without a label (1): {tmp_path / 'imagesTr' / 'lonely_image.nii.gz'}" in message
    assert f"Labels without an image (1): {tmp_path / 'labelsTr' / 'lonely_label.nii.gz'}" in message
    assert sorted(info.value.paths) == sorted(
        [str(tmp_path / "imagesTr" / "lonely_image.nii.gz"), str(tmp_path / "labelsTr" / "lonely_label.nii.gz")]
    )


def test_msd_missing_label_and_image_are_listed(msd_folder):
    (msd_folder / "labelsTr" / "p01_frame09.nii.gz").unlink()
    (msd_folder / "imagesTr" / "p02_frame11.nii.gz").unlink()
    with pytest.raises(DataError, match="do not pair up") as info:
        discover(msd_folder)
    message = str(info.value)
    assert "Images without a label (1): " in message and "p01_frame09.nii.gz" in message
    assert "Labels without an image (1): " in message and "its image" in message and "p02_frame11" in message


def test_nnunet_label_without_image(tmp_path, rng):
    root = make_nnunet(tmp_path / "Dataset042_Toy", rng)
    (root / "imagesTr" / "ab_002_0000.nii.gz").unlink()
    with pytest.raises(DataError, match="Labels without an image") as info:
        discover(root)
    assert str(root / "labelsTr" / "ab_002.nii.gz") in str(info.value)


def test_duplicate_case_ids_nii_and_nii_gz(tmp_path, rng):
    write_case(tmp_path, "imagesTr/dup.nii.gz", "labelsTr/dup.nii.gz", rng)
    write_case(tmp_path, "imagesTr/dup.nii", "", rng)
    with pytest.raises(DataError, match=r"duplicate case ids \['dup'\]") as info:
        discover(tmp_path)
    assert str(tmp_path / "imagesTr" / "dup.nii") in str(info.value)
    assert str(tmp_path / "imagesTr" / "dup.nii.gz") in str(info.value)


def test_duplicate_case_ids_listed_twice_in_msd_json(msd_folder):
    meta = json.loads((msd_folder / "dataset.json").read_text())
    meta["training"].append(dict(meta["training"][0]))
    (msd_folder / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"duplicate case ids \['p01_frame01'\]"):
        discover(msd_folder)


def test_non_nifti_file_in_images(tmp_path, rng):
    write_case(tmp_path, "imagesTr/a.nii.gz", "labelsTr/a.nii.gz", rng)
    (tmp_path / "imagesTr" / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match="non-image files among the images/labels") as info:
        discover(tmp_path)
    assert info.value.paths == [str(tmp_path / "imagesTr" / "a.png")]


def test_nnunet_image_without_channel_suffix(tmp_path, rng):
    root = make_nnunet(tmp_path / "Dataset042_Toy", rng)
    write_case(root, "imagesTr/stray.nii.gz", "", rng)
    with pytest.raises(DataError, match="nnU-Net image names end in _0000") as info:
        discover(root)
    assert str(root / "imagesTr" / "stray.nii.gz") in str(info.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [("{not json", "cannot parse dataset.json"), ("[1, 2]", "must hold a JSON object")],
    ids=["malformed", "not-an-object"],
)
def test_bad_dataset_json(tmp_path, rng, text, match):
    write_case(tmp_path, "imagesTr/a.nii.gz", "labelsTr/a.nii.gz", rng)
    (tmp_path / "dataset.json").write_text(text)
    with pytest.raises(DataError, match=match) as info:
        discover(tmp_path)
    assert str(tmp_path / "dataset.json") in str(info.value)
