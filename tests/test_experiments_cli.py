"""Every experiment's command line: ``--help`` exits cleanly and lists an option for
every field of its config dataclass."""

import dataclasses
import importlib

import pytest

EXPERIMENTS = [
    "adding", "alphabet", "bit_reverse", "char_lm", "clockwork", "hello_char", "long_range",
    "next_word", "pos_tagging", "sentiment", "translation", "vanishing_gradients",
]  # fmt: skip


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_help_lists_every_option(name, capsys):
    module = importlib.import_module(f"experiments.{name}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(module.Config):
        assert "--" + field.name.replace("_", "-") in text
