"""experiments/translation.py: a tiny run writes its files (replacing a previous run's) and
keeps its trained model; the examples encode each date's text and its ISO form exactly;
held-out dates are never trained on."""

import datetime
import json

import jax
import numpy as np
import optax

from experiments import translation
from rnnjax.data.dates import FORMAT_NAMES
from rnnjax.train import init_train_state, list_checkpoints, restore_checkpoint

TINY = [
    "--train-size",
    "200",
    "--test-dates",
    "20",
    "--test-size",
    "20",
    "--steps",
    "6",
    "--eval-every",
    "3",
    "--embed-size",
    "8",
    "--hidden-size",
    "8",
    "--batch-size",
    "8",
    "--beam-width",
    "2",
    "--show",
    "3",
]
PNG = b"\x89PNG\r\n\x1a\n"


def test_a_tiny_run_writes_config_metrics_examples_figures_and_its_model(tmp_path, capsys):
    (tmp_path / "train" / "checkpoints").mkdir(parents=True)  # a previous run, replaced
    (tmp_path / "train" / "checkpoints" / "checkpoint_000000999.json").write_text("{}")
    (tmp_path / "train" / "metrics.jsonl").write_text('{"split": "train", "step": 999}\n')
    metrics = translation.main([*TINY, "--out", str(tmp_path), "--no-progress"])
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["beam_width"] == 2 and config["encoder"] == "bilstm"
    assert 0.0 <= metrics["greedy_exact_match"] <= 1.0
    assert 0.0 <= metrics["beam_exact_match"] <= 1.0
    assert metrics["beam_width"] == 2 and metrics["test_size"] == 20
    per_format = [k for k in metrics if k.startswith("greedy_exact_match_")]
    assert per_format and {k[len("greedy_exact_match_") :] for k in per_format} <= set(FORMAT_NAMES)
    assert all(0.0 <= metrics[k] <= 1.0 for k in per_format)
    for png in ("exact_match.png", "learning_curve.png", "train/metrics.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG, png
    assert len((tmp_path / "examples.txt").read_text().splitlines()) == 4  # header + 3
    assert "held-out exact match" in capsys.readouterr().out

    rows = [json.loads(line) for line in (tmp_path / "train" / "metrics.jsonl").open()]
    assert [r["step"] for r in rows if r["split"] == "eval"] == [3, 6]
    assert [step for step, _ in list_checkpoints(tmp_path / "train" / "checkpoints")] == [6]
    model = translation.build_model(translation.Config(embed_size=8, hidden_size=8))
    key = jax.random.key(0)
    template = init_train_state(model.init(key), optax.adam(optax.constant_schedule(1.0)), key)
    restored = restore_checkpoint(metrics["checkpoint"], template)
    assert restored.step == 6 and restored.config == config  # the trained params, with the config


def test_examples_encode_the_text_and_the_iso_date_with_start_and_end_tokens():
    dates = [datetime.date(1998, 3, 3), datetime.date(2049, 12, 31)]
    data = translation.make_examples(np.random.default_rng(0), dates, 40)
    for i in range(40):
        n = data.src_lengths[i]
        assert translation.SRC.decode(data.src[i, :n]) == data.texts[i]
        assert np.all(data.src[i, n:] == 0)
        assert data.tgt_in[i, 0] == translation.START
        assert translation.decode_text(data.tgt_out[i]) == data.targets[i]
        assert data.tgt_out[i, -1] == translation.END
        np.testing.assert_array_equal(data.tgt_in[i, 1:], data.tgt_out[i, :-1])
        assert data.targets[i] in ("1998-03-03", "2049-12-31")


def test_the_longest_source_fits_and_held_out_dates_are_unseen():
    from rnnjax.data.dates import all_dates, format_date

    longest = max(len(format_date(d, f)) for d in all_dates() for f in FORMAT_NAMES)
    assert longest <= translation.SOURCE_STEPS
    train, test = translation.split_dates(np.random.default_rng(0), 300)
    assert len(test) == 300 and not set(train) & set(test)
    assert len(train) + len(test) == len(all_dates())


def test_decode_text_stops_at_the_end_token():
    ids = [translation.TGT.chars.index(c) for c in "2001-"] + [translation.END, 3, 3]
    assert translation.decode_text(ids) == "2001-"
