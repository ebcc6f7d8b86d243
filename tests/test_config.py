"""Configuration: coercion of YAML / flag values, unknown keys, precedence defaults < yaml < flags, saving."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import yaml

from imaseg.config import config_from_dict, load_yaml, save_config, to_dict
from imaseg.config_flags import add_config_arguments, resolve_config
from imaseg.transforms.chain import PreprocessConfig


@dataclasses.dataclass
class Toy:
    eps: float = 0.0
    steps: int = 10
    sizes: tuple[int, ...] = (1, 2)
    budgets: list[float] = dataclasses.field(default_factory=lambda: [0.1])
    limit: int | None = 5
    name: str = "x"
    flag: bool = False


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        ({"spacing": "1.5,1.5,-1"}, "spacing", [1.5, 1.5, -1.0]),
        ({"spatial_size": "64, 32"}, "spatial_size", [64, 32]),
        ({"spatial_size": "64,"}, "spatial_size", [64]),
        ({"spatial_size": 96}, "spatial_size", [96]),
        ({"spatial_size": [96.0, 64]}, "spatial_size", [96, 64]),
        ({"val_groups": "2/10"}, "val_groups", 0.2),
        ({"window": "-1000, 2/5"}, "window", [-1000.0, 0.4]),
        ({"folds": "3"}, "folds", 3),
        ({"folds": "6/2"}, "folds", 3),
        ({"crop_foreground": "yes"}, "crop_foreground", True),
        ({"crop_foreground": "Off"}, "crop_foreground", False),
        ({"crop_foreground": 1}, "crop_foreground", True),
        ({"orientation": "none"}, "orientation", None),
        ({"orientation": None}, "orientation", None),
        ({"spacing": "null"}, "spacing", None),
        ({"group_map": ""}, "group_map", None),
        ({"seed": 7}, "seed", 7),
    ],
    ids=[
        "float-list",
        "int-list-spaces",
        "trailing-comma",
        "scalar-to-list",
        "integral-floats",
        "fraction",
        "fraction-in-list",
        "int-string",
        "int-fraction",
        "bool-yes",
        "bool-off",
        "bool-one",
        "none-string",
        "none-value",
        "null-list",
        "empty-string",
        "int",
    ],
)
def test_coercion(data, field, expected):
    value = getattr(config_from_dict(PreprocessConfig, data), field)
    assert value == pytest.approx(expected) if isinstance(expected, float) else value == expected
    assert type(value) is type(expected)


def test_fraction_keeps_full_precision():
    assert config_from_dict(Toy, {"eps": "2/255"}).eps == 2 / 255
    assert config_from_dict(Toy, {"budgets": "1/255,2/255"}).budgets == [1 / 255, 2 / 255]


def test_tuple_optional_str_and_bool_fields():
    toy = config_from_dict(Toy, {"sizes": "3,4", "limit": "None", "name": 12, "flag": "true"})
    assert toy == Toy(sizes=(3, 4), limit=None, name="12", flag=True)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"folds": "many"}, r"`folds` must be int, got 'many'"),
        ({"folds": 2.5}, r"`folds` must be int, got 2.5"),
        ({"folds": "2.5"}, r"`folds` must be int, got '2.5'"),
        ({"spatial_size": "64,64.7"}, r"`spatial_size` must be int, got '64.7'"),
        ({"folds": True}, r"`folds` must be int, got True"),
        ({"val_groups": "1/0"}, r"`val_groups` must be float"),
        ({"crop_foreground": "maybe"}, r"`crop_foreground` must be true or false, got 'maybe'"),
        ({"folds": None}, r"`folds` may not be empty"),
        ({"mode": None}, r"`mode` may not be empty"),
    ],
    ids=[
        "word-for-int",
        "float-for-int",
        "float-string-for-int",
        "float-in-int-list",
        "bool-for-int",
        "division-by-zero",
        "bad-bool",
        "none-for-int",
        "none-for-str",
    ],
)
def test_bad_values_raise_naming_the_field(data, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict(PreprocessConfig, data)


def test_unknown_keys_raise_listing_the_valid_ones():
    with pytest.raises(
        ValueError, match=r"settings.yaml: unknown keys \['epochs', 'foldz'\] for PreprocessConfig"
    ) as info:
        config_from_dict(PreprocessConfig, {"foldz": 3, "epochs": 2, "seed": 1}, source="settings.yaml")
    message = str(info.value)
    names = [f.name for f in dataclasses.fields(PreprocessConfig)]
    assert message.endswith("valid keys: " + ", ".join(names))


def test_kebab_case_keys():
    assert config_from_dict(PreprocessConfig, {"keep-empty-slices": "no"}).keep_empty_slices is False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, PreprocessConfig)
    return parser


def test_precedence_defaults_then_yaml_then_flags(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("folds: 3\nseed: 4\nspatial_size: [96, 96]\nkeep_empty_slices: false\n")
    # a value starting with "-" needs the "=" form (argparse would take "-200,300" for an option)
    args = _parser().parse_args(["--seed", "9", "--window=-200,300", "--keep-empty-slices"])
    config = resolve_config(PreprocessConfig, load_yaml(path), args)
    assert config.folds == 3  # yaml over default
    assert config.spatial_size == [96, 96]  # yaml over default
    assert config.seed == 9  # flag over yaml
    assert config.window == [-200.0, 300.0]  # flag over default
    assert config.keep_empty_slices is True  # flag over yaml, booleans too
    assert config.val_groups == PreprocessConfig().val_groups  # untouched default
    assert resolve_config(PreprocessConfig, {}, _parser().parse_args([])) == PreprocessConfig()


def test_flags_use_choices_from_metadata(capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--mode", "4d"])
    assert info.value.code == 2
    assert "invalid choice: '4d'" in capsys.readouterr().err


def test_flag_help_shows_defaults():
    text = _parser().format_help()
    assert "--spatial-size A,B,..." in text and "(default: 128,128)" in text
    assert "--no-crop-foreground" in text


def test_save_config_round_trip(tmp_path):
    config = PreprocessConfig(spacing=[1.5, 1.5, -1.0], orientation=None, folds=3, window=[-1000.0, 2 / 5])
    path = save_config(tmp_path / "out" / "config.yaml", {"preprocess": config, "note": {"a": 1}})
    loaded = yaml.safe_load(path.read_text())
    assert loaded == {"preprocess": to_dict(config), "note": {"a": 1}}
    assert list(loaded["preprocess"]) == [f.name for f in dataclasses.fields(PreprocessConfig)]  # field order kept
    assert config_from_dict(PreprocessConfig, loaded["preprocess"]) == config


def test_to_dict_turns_tuples_into_lists():
    assert to_dict(Toy(sizes=(3, 4)))["sizes"] == [3, 4]


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        (None, FileNotFoundError, "does not exist"),
        ("a: [1,\n", ValueError, "not valid YAML"),
        ("- 1\n- 2\n", ValueError, "must hold a mapping at the top level, got list"),
    ],
    ids=["missing", "malformed", "list"],
)
def test_load_yaml_errors(tmp_path, text, error, match):
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(error, match=match):
        load_yaml(path)


def test_load_yaml_of_nothing():
    assert load_yaml(None) == {}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"ima_delta": 0.5}, 0.5, id="flat"),
        pytest.param({"ima": {"delta": 0.5}}, 0.5, id="nested"),
        pytest.param({"ima": {"delta": 0.5}, "ima_delta": "1/8"}, 0.125, id="flat-wins"),
        pytest.param({"ima-delta": "0.75"}, 0.75, id="kebab"),
    ],
)
def test_sections_read_nested_or_flat_keys(data, expected):
    from imaseg.training.config import TrainConfig

    assert config_from_dict(TrainConfig, data).ima.delta == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"ima": {"delat": 0.5}}, r"train: ima: unknown keys \['delat'\] for IMAConfig", id="nested-typo"),
        pytest.param({"ima": 0.5}, "`ima` must be a mapping of IMAConfig keys", id="not-a-mapping"),
        pytest.param({"ima_steps": "2.5"}, "`steps` must be int, got '2.5'", id="bad-value"),
    ],
)
def test_section_errors_name_the_key(data, message):
    from imaseg.training.config import TrainConfig

    with pytest.raises(ValueError, match=message):
        config_from_dict(TrainConfig, data, source="train")


def test_section_flags_override_the_yaml_and_save_nested():
    from imaseg.training.config import TrainConfig

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig)
    args = parser.parse_args(["--ima-delta", "0.5", "--ima-margin", "sample", "--epochs", "3"])
    config = resolve_config(TrainConfig, {"ima": {"delta": 0.1, "steps": 7}, "epochs": 9}, args)
    assert (config.epochs, config.ima.delta, config.ima.margin, config.ima.steps) == (3, 0.5, "sample", 7)
    saved = to_dict(config)
    assert saved["ima"]["delta"] == 0.5 and "ima_delta" not in saved
    assert config_from_dict(TrainConfig, saved) == config


def test_configs_are_frozen():
    from imaseg.training.config import TrainConfig

    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().epochs = 3  # type: ignore[misc]


def _help_of(cls) -> str:
    from imaseg.config_flags import HelpFormatter

    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    add_config_arguments(parser, cls)
    return " ".join(parser.format_help().split())


def test_attack_help_lists_every_registered_kind(monkeypatch):
    from imaseg.attacks.registry import ATTACKS, attack_kinds
    from imaseg.evaluation.config import EvalConfig
    from imaseg.prediction.config import PredictConfig

    monkeypatch.setitem(ATTACKS, "newpgd", dataclasses.replace(ATTACKS["pgd"], kind="newpgd"))
    evaluate, predict = _help_of(EvalConfig), _help_of(PredictConfig)
    kinds = attack_kinds(ensemble=False)
    assert "newpgd" in kinds and f"attacks KIND-NORM ({', '.join(kinds)}; l2, linf) and worst-NORM" in evaluate
    flips = ", ".join(f"{kind}-l2" for kind in attack_kinds(records_flips=True))
    assert "newpgd-l2" in flips and f"(one that records flips: {flips})" in predict
    assert "noise-l2" not in flips, "noise records no flips"


def test_setting_copies_list_defaults_and_keeps_its_help():
    from imaseg.config import setting

    @dataclasses.dataclass(frozen=True)
    class Example:
        sizes: list[int] = setting([1, 2], "sizes", metavar="N,N")
        name: str = setting("a", lambda: "made when asked")

    first, second = Example(), Example()
    assert first.sizes == [1, 2] and first.sizes is not second.sizes
    text = _help_of(Example)
    assert "--sizes N,N sizes (default: 1,2)" in text and "made when asked (default: a)" in text


def test_a_section_without_shorthand_still_wants_a_mapping():
    from imaseg.training.config import TrainConfig

    with pytest.raises(ValueError, match="`adversarial` must be a mapping of AdversarialConfig keys, got 0.5"):
        config_from_dict(TrainConfig, {"adversarial": 0.5}, source="train")


def test_a_config_section_that_is_not_a_mapping_is_named_with_its_file(tmp_path, capsys):
    from imaseg.cli import main
    from imaseg.config import config_part

    with pytest.raises(
        ValueError, match=r"run.yaml: `train` must be a mapping of settings \(key: value lines\), got list"
    ):
        config_part({"train": [1, 2]}, "train", "run.yaml")
    with pytest.raises(ValueError, match="preprocess: expected a mapping of settings .*got str"):
        config_from_dict(PreprocessConfig, "fast", source="preprocess")
    assert config_from_dict(PreprocessConfig, None) == PreprocessConfig()  # an empty section: the defaults
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  - epochs\n")
    assert (
        main(["train", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--config", str(path)]) == 1
    )
    assert f"imaseg train: error: {path}: `train` must be a mapping" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_setting_with_choices_is_checked_in_yaml_as_its_flag_is():
    from imaseg.training.config import TrainConfig

    with pytest.raises(ValueError, match="train: unknown `schedule` 'cosin'; choose one of cosine, poly, constant"):
        config_from_dict(TrainConfig, {"schedule": "cosin"}, source="train")
    assert config_from_dict(TrainConfig, {"schedule": "poly"}).schedule == "poly"


def test_choices_read_any_case_and_a_loss_registered_later(monkeypatch):
    from imaseg.losses.adversarial import ADVERSARIAL_LOSSES
    from imaseg.training.config import TrainConfig

    assert config_from_dict(TrainConfig, {"schedule": "Poly"}).schedule == "poly"  # as the code compares it
    monkeypatch.setitem(ADVERSARIAL_LOSSES, "later", ADVERSARIAL_LOSSES["dice-ce"])
    assert config_from_dict(TrainConfig, {"adversarial": {"loss": "later"}}).adversarial.loss == "later"


def test_a_check_across_settings_names_the_file_through_the_cli(tmp_path, capsys):
    from imaseg.cli import main

    path = tmp_path / "run.yaml"
    path.write_text("train:\n  val_every: 0\n")
    assert (
        main(["train", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--config", str(path)]) == 1
    )
    assert f"imaseg train: error: {path}: `val_every` must be >= 1, got 0" in capsys.readouterr().err
