"""``experiments.common``: a config dataclass becomes a command line (that writes nothing),
a run directory gets a flat ``metrics.json`` and, when asked, ``config.json``."""

import dataclasses
import json

import numpy as np
import pytest

from experiments.common import finish, option, parse_config, positive, positive_number


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = option(0, "seed")
    rate: float = option(0.1, "learning rate")
    cells: tuple[str, ...] = option(("rnn", "lstm"), "cells to compare")
    data: str | None = option(None, "a file")
    clip: bool = option(True, "clip gradients")
    steps: int = option(10, "training steps")

    def __post_init__(self):
        positive(self, "steps")


def parse(argv, tmp_path):
    return parse_config(
        Config,
        [*argv, "--out", str(tmp_path / "run")],
        prog="t",
        description="d",
        default_out="unused",
    )


def test_every_field_is_an_option_of_its_type_and_nothing_is_written(tmp_path):
    config, run = parse(
        ["--seed", "3", "--rate", "0.5", "--cells", "gru", "lstm", "--data", "f.txt", "--no-clip"],
        tmp_path,
    )
    assert config == Config(seed=3, rate=0.5, cells=("gru", "lstm"), data="f.txt", clip=False)
    assert run == tmp_path / "run" and not run.exists()  # the run directory's writers make it


def test_defaults_hold_without_options(tmp_path):
    assert parse([], tmp_path)[0] == Config()


def test_a_bad_value_is_a_usage_error_naming_the_option(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse(["--steps", "0"], tmp_path)
    assert "`steps` must be a positive integer, got 0" in capsys.readouterr().err


def test_metrics_json_is_flat_plain_json(tmp_path):
    metrics = finish(tmp_path, {"accuracy": np.float32(0.5), "curve": np.arange(3), "name": "x"})
    assert metrics == {"accuracy": 0.5, "curve": [0, 1, 2], "name": "x"}
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert not (tmp_path / "config.json").exists()  # fit writes it where it ran
    with pytest.raises(ValueError, match="metrics.json is flat"):
        finish(tmp_path, {"per_cell": {"rnn": 1.0}})


def test_finish_writes_config_json_when_given_the_config(tmp_path):
    config = Config(seed=3, cells=("gru",))
    finish(tmp_path / "run", {"accuracy": 1.0}, config=config)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved == {**dataclasses.asdict(config), "cells": ["gru"]}


def test_an_alias_sets_the_same_option(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class WithAlias:
        lengths: tuple[int, ...] = option((50, 100), "sequence lengths", aliases=("--T",))

    def run(argv, name):
        return parse_config(
            WithAlias,
            [*argv, "--out", str(tmp_path / name)],
            prog="t",
            description="d",
            default_out="unused",
        )[0]

    assert run(["--T", "300"], "a").lengths == (300,)
    assert run(["--lengths", "50", "200"], "b").lengths == (50, 200)
    assert run([], "c").lengths == (50, 100)


def test_an_alias_must_be_a_long_flag():
    with pytest.raises(ValueError, match="aliases"):
        option(1, "x", aliases=("-T",))


@pytest.mark.parametrize("bad", [0.0, -1e-3, float("nan")])
def test_positive_number_names_the_first_field_that_is_not_above_zero(bad):
    Rates = dataclasses.make_dataclass("Rates", [("learning_rate", float), ("clip_norm", float)])
    positive_number(Rates(1e-3, 1.0), "learning_rate", "clip_norm")  # no error
    with pytest.raises(ValueError, match=r"`clip-norm` must be > 0, got"):
        positive_number(Rates(1e-3, bad), "learning_rate", "clip_norm")
