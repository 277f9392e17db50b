"""params.yaml validation: the shipped file is valid; each kind of mistake names the key."""

from pathlib import Path

import pytest
import yaml

from potstill.errors import ParamsError
from potstill.params import SECTIONS, load_params

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, overrides: dict) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_shipped_params_are_valid_and_complete():
    loaded = load_params(ROOT / "params.yaml", *SECTIONS)
    assert set(loaded) == set(SECTIONS)
    assert loaded["kd"].temperature > 0 and 0 <= loaded["kd"].alpha <= 1


def test_every_shipped_param_has_a_comment():
    keys = [line for line in (ROOT / "params.yaml").read_text().splitlines()
            if line.startswith("  ") and not line.strip().startswith("#") and ":" in line]
    assert keys
    assert [line for line in keys if "#" not in line] == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"lora": {"rank": 8}}, "lora.rank: unknown key"),
        ({"lora": {"r": 0}}, "lora.r: Input should be greater than or equal to 1"),
        ({"kd": {"alpha": 1.5}}, "kd.alpha: Input should be less than or equal to 1"),
        ({"teacher": {"temperature": -0.1}}, "teacher.temperature"),
        ({"train": {"max_steps": "many"}}, "train.max_steps: Input should be a valid integer"),
        ({"kd": {"source": "telepathy"}}, "kd.source: Input should be 'local', 'api' or 'none'"),
        ({"quantize": {"formats": ["int3"]}}, "quantize.formats: Value error, unknown format(s) ['int3']; allowed"),
        ({"teacher": {"base_url": "localhost:8000"}}, "teacher.base_url"),
        ({"student": {"keep_layers": [3, 1]}}, "student.keep_layers"),
    ],
)
def test_bad_values_name_the_key_and_the_value(tmp_path, overrides, expected):
    path = write(tmp_path, overrides)
    with pytest.raises(ParamsError) as err:
        load_params(path, *SECTIONS)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_missing_teacher_model_is_reported(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    del params["teacher"]["model"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match="teacher.model: required key is missing"):
        load_params(path, "teacher")


def test_unknown_section_and_broken_yaml(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("teacher: {}\ntrian: {}\n")
    with pytest.raises(ParamsError, match=r"unknown section\(s\) \['trian'\]"):
        load_params(path, "teacher")
    path.write_text("teacher: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path, "teacher")
