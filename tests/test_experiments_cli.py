"""Every experiment's command line: ``--help`` exits cleanly and lists an option for
every field of its config dataclass, and a bad option is a usage error (exit status
2) whose message names it, before anything is written."""

import dataclasses
import importlib

import pytest

EXPERIMENTS = [
    "adding",
    "alphabet",
    "bit_reverse",
    "char_lm",
    "clockwork",
    "hello_char",
    "long_range",
    "next_word",
    "pos_tagging",
    "sentiment",
    "translation",
    "vanishing_gradients",
]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_help_lists_every_option(name, capsys):
    module = importlib.import_module(f"experiments.{name}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(module.Config):
        assert "--" + field.name.replace("_", "-") in text


# experiment -> (arguments, what the error message must name)
BAD_OPTIONS = {
    "adding": [
        (["--cells", "lstmx"], "`cells`"),
        (["--lengths", "1"], "`lengths`"),
        (["--learning-rate", "0"], "`learning-rate`"),
        (["--eval-every", "0"], "`eval-every`"),
    ],
    "char_lm": [
        (["--cell", "lstmm"], "`cell`"),
        (["--batching", "random"], "`batching`"),
        (["--steps", "0"], "`steps`"),
        (["--temperatures", "0"], "`temperatures`"),
        (["--val-fraction", "1"], "`val-fraction`"),
        (["--hidden-size", "big"], "--hidden-size"),
        (["--load", "/nonexistent/run"], "`load`"),
        (["--load", "/nonexistent/run", "--resume"], "`resume`"),
        (["--resume", "--no-checkpoint"], "`resume`"),
    ],
    "alphabet": [
        (["--start", "Z"], "start"),
        (["--start", "f"], "start"),
        (["--cell", "tcn"], "cell"),
        (["--steps", "0"], "steps"),
        (["--reverse-start", "A"], "reverse-start"),
    ],
    "bit_reverse": [
        (["--problems", "p5"], "`problems`"),
        (["--first-output", "one"], "`first-output`"),
        (["--steps", "0"], "`steps`"),
        (["--pad-value", "1"], "`pad-value`"),
    ],
    "clockwork": [
        (["--targets", "music"], "targets"),
        (["--models", "gru"], "models"),
        (["--cw-periods", "1", "2"], "cw-periods"),
        (["--seeds", "0"], "seeds"),
    ],
    "hello_char": [
        (["--cell", "elman"], "`cell`"),
        (["--hidden-size", "0"], "`hidden-size`"),
        (["--word", "h"], "`word`"),
        (["--steps", "x"], "--steps"),
    ],
    "long_range": [
        (["--cells", "transformer"], "`cells`"),
        (["--distances", "0"], "`distances`"),
        (["--num-cues", "1"], "`num-cues`"),
        (["--impl", "fast"], "`impl`"),
    ],
    "next_word": [
        (["--vocab-size", "0"], "`vocab-size`"),
        (["--cell", "cnn"], "`cell`"),
        (["--load", "/nonexistent/run"], "`load`"),
        (["--top-k", "x"], "--top-k"),
        (["--load", "/nonexistent/run", "--resume"], "`resume`"),
    ],
    "pos_tagging": [
        (["--steps", "0"], "steps"),
        (["--test-fraction", "1.5"], "test-fraction"),
        (["--learning-rate", "0"], "learning-rate"),
        (["--min-count", "x"], "--min-count"),
    ],
    "sentiment": [
        (["--steps", "0"], "steps"),
        (["--cell", "transformer"], "cell"),
        (["--bow-learning-rate", "-1"], "bow-learning-rate"),
        (["--examples", "they are hungry"], "examples"),
        (["--test-size", "60000"], "test-size"),
        (["--hidden-size", "many"], "--hidden-size"),
    ],
    "translation": [
        (["--steps", "0"], "steps"),
        (["--encoder", "gru"], "encoder"),
        (["--beam-width", "0"], "beam-width"),
        (["--test-dates", "20000"], "test-dates"),
    ],
    "vanishing_gradients": [
        (["--steps", "0"], "steps"),
        (["--radii", "0.5", "-1"], "radii"),
        (["--momentum", "1.0"], "momentum"),
        (["--train-rho", "x"], "--train-rho"),
        (["--parts", "flow", "plots"], "parts"),
    ],
    "demo": [
        (["--steps", "0"], "`steps`"),
        (["--steps", "many"], "--steps"),
        (["--temperatures", "-1"], "`temperatures`"),
        (["--val-fraction", "1"], "`val-fraction`"),
        (["--load", "/nonexistent/run"], "`load`"),
    ],
}


@pytest.mark.parametrize(
    "name, argv, named",
    [(name, argv, named) for name, cases in BAD_OPTIONS.items() for argv, named in cases],
)
def test_a_bad_option_is_a_usage_error_naming_it(name, argv, named, tmp_path, capsys):
    module = importlib.import_module(f"experiments.{name}")
    with pytest.raises(SystemExit) as exit_info:
        module.main([*argv, "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
