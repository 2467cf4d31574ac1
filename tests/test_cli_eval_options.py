"""``cai eval``'s options are derived from ``EvalConfig``: one definition of each setting."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from cai_engine.cli.eval import OPTION_NAMES, eval_command, eval_config_from_cli
from cai_engine.cli.model_options import flag_of
from cai_engine.errors import ConfigError
from cai_engine.evaluation.config import EvalConfig


def test_every_eval_config_field_is_an_option_with_its_description() -> None:
    params = inspect.signature(eval_command).parameters
    assert set(EvalConfig.model_fields) <= set(params)
    for name, field in EvalConfig.model_fields.items():
        option = params[name].annotation.__metadata__[0]
        assert flag_of(name, OPTION_NAMES) in option.default  # typer keeps the first declaration there
        assert option.help.startswith((field.description or "").rstrip(".")), name
        assert params[name].default is None  # the model's default applies, not a second copy


def test_help_lists_fields_the_old_hand_written_options_lacked(capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from cai_engine.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    try:
        main(["eval", "--help"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    text = capsys.readouterr().out
    assert "--top-p" in text and "--n-boot" in text and "--config" in text and "Default: 256." in text


def test_config_file_then_options_and_old_spellings(tmp_path: Path) -> None:
    path = tmp_path / "eval.yaml"
    path.write_text("model: mock/a\nbase_model: mock/b\nmax_tokens: 64\nlimit: 3\nmetrics: [winrate, text]\n")
    config = eval_config_from_cli(path, {"max_tokens": 32, "use_cache": False, "logprobs": False, "top_p": 0.9,
                                         "metrics": None, "max_cost_usd": 1.5})
    assert (config.model, config.base_model, config.max_tokens, config.limit) == ("mock/a", "mock/b", 32, 3)
    assert config.metrics == ["winrate", "text"] and not config.use_cache and not config.logprobs
    assert config.top_p == 0.9 and config.max_cost_usd == 1.5 and config.n_boot == EvalConfig.model_fields["n_boot"].default


@pytest.mark.parametrize(("values", "message"), [
    ({"base_model": "mock/b"}, "--model is required"),
    ({"model": "mock/a", "base_model": "mock/b", "temperature": 3.0}, "--temperature: Input should be less than or equal to 2"),
    ({"model": "mock/a", "base_model": "mock/b", "max_cost_usd": 0.0}, "--max-cost: Input should be greater than 0"),
    ({"model": "mock/a", "base_model": "mock/b", "metrics": "winrate,speed"}, "--metrics 'winrate,speed'"),
])
def test_a_bad_option_is_one_line_naming_it(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        eval_config_from_cli(None, values)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_bad_value_in_the_config_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "eval.yaml"
    path.write_text("model: mock/a\nbase_model: mock/b\nmax_tokens: -4\n")
    with pytest.raises(ConfigError) as info:
        eval_config_from_cli(path, {})
    assert str(info.value).startswith(f"{path}:3: max_tokens:")
