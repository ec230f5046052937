"""``experiments.clockwork`` runs end to end on a tiny config; its targets are checked
against their definitions written out step by step, its parameter counts against
counts made unit by unit, and its seeds-side-by-side training against training each
seed alone. Each model's trained parameters are kept in the run directory, and a
second run into the same directory replaces the first."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import clockwork
from rnnjax.train import latest_checkpoint, list_checkpoints, read_metrics, restore_checkpoint

PNG = b"\x89PNG\r\n\x1a\n"
TINY = [  # (the LSTM is left out to save its compilation; its model is checked below)
    "--seeds",
    "2",
    "--steps",
    "4",
    "--rnn-hidden",
    "3",
    "--models",
    "rnn",
    "cw",
    "--cw-module-sizes",
    "2",
    "1",
    "--cw-periods",
    "1",
    "4",
    "--no-progress",
]
TINY_CONFIG = clockwork.Config(
    seeds=2,
    steps=4,
    rnn_hidden=3,
    models=("rnn", "cw"),
    cw_module_sizes=(2, 1),
    cw_periods=(1, 4),
    progress=False,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny run, twice into the same directory: ``(run_dir, first metrics, second metrics)``."""
    out = tmp_path_factory.mktemp("clockwork")
    first = clockwork.main([*TINY, "--out", str(out)])
    return out, first, clockwork.main([*TINY, "--out", str(out)])


def test_a_tiny_run_writes_config_metrics_and_figures(tiny_run):
    tmp_path, _, metrics = tiny_run
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["seeds"] == 2 and config["cw_periods"] == [1, 4]
    assert config["models"] == ["rnn", "cw"]
    for name in ("clockwork.png", "nmse.png", "training.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
    for model in ("rnn", "cw"):
        rows = read_metrics(tmp_path / f"train_{model}", split="train")
        assert [r["step"] for r in rows] == [0]  # logged every 10 steps
        for target in clockwork.TARGETS:
            assert math.isfinite(rows[-1][f"nmse_{target}"])
    for target in clockwork.TARGETS:
        for model in ("rnn", "cw"):
            scores = metrics[f"{target}_{model}_nmse"]
            assert len(scores) == 2 and all(math.isfinite(s) and s > 0 for s in scores)
            assert metrics[f"{target}_{model}_nmse_mean"] == pytest.approx(np.mean(scores))
        assert metrics[f"{target}_rnn_over_cw"] == pytest.approx(
            metrics[f"{target}_rnn_nmse_mean"] / metrics[f"{target}_cw_nmse_mean"]
        )
    # tanh RNN H=3: 3 + 9 + 6 (cell) + 4 (readout); clockwork (2, 1), periods (1, 4):
    # unit 0, 1 read all 3 units, unit 2 reads only itself: 7 recurrent weights
    assert metrics["rnn_num_params"] == 3 + 9 + 6 + 4
    assert metrics["cw_num_params"] == 3 + 7 + 6 + 4


def test_each_model_keeps_its_trained_parameters_with_the_config(tiny_run):
    """Each final checkpoint restores into the experiment's initial state (every seed
    and target stacked), and the restored models score the reported NMSEs."""
    tmp_path, _, metrics = tiny_run
    for model in ("rnn", "cw"):
        run = tmp_path / f"train_{model}"
        template = clockwork.initial_state(TINY_CONFIG, model, len(clockwork.TARGETS))
        restored = restore_checkpoint(latest_checkpoint(run / "checkpoints"), template)
        assert restored.step == 4 and int(restored.state.step) == 4
        assert restored.config == json.loads((run / "config.json").read_text())
        top = json.loads((tmp_path / "config.json").read_text())
        assert restored.config == {**top, "model": model}
        ys = clockwork.generate_all(
            clockwork.make_model(model, TINY_CONFIG),
            len(clockwork.TARGETS),
            restored.state.params,
        )
        for target, y in zip(clockwork.TARGETS, np.asarray(ys, np.float64), strict=True):
            scores = clockwork.nmse(y, clockwork.target(target))
            np.testing.assert_allclose(scores, metrics[f"{target}_{model}_nmse"], rtol=1e-6)


def test_a_second_run_into_the_same_directory_replaces_the_first(tiny_run):
    """Neither an error nor a log that grows: the same lines, one final checkpoint,
    the same results (everything is seeded)."""
    tmp_path, first, second = tiny_run
    without_time = lambda m: {k: v for k, v in m.items() if not k.endswith("seconds")}
    assert without_time(second) == without_time(first)
    for model in ("rnn", "cw"):
        run = tmp_path / f"train_{model}"
        assert [r["step"] for r in read_metrics(run, split="train")] == [0]
        assert [step for step, _ in list_checkpoints(run / "checkpoints")] == [4]


def test_the_paper_target_is_the_formula_at_t_equal_0_01_i_mapped_onto_minus_1_1():
    values = []
    for i in range(320):
        t = 0.01 * i
        values.append(
            0.5 * math.sin(2 * t)
            - 0.05 * math.cos(17 * t + 0.8)
            + 0.05 * math.sin(25 * t + 10)
            - 0.02 * math.cos(45 * t + 0.3)
        )
    low, high = min(values), max(values)
    expected = [2 * (v - low) / (high - low) - 1 for v in values]
    got = clockwork.target("paper")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert got.min() == -1.0 and got.max() == 1.0


def test_the_sines_target_is_the_sum_of_its_components_mapped_onto_minus_1_1():
    raw = [
        sum(a * math.sin(2 * math.pi * i / p + phase) for p, a, phase in clockwork.SINES)
        for i in range(320)
    ]
    low, high = min(raw), max(raw)
    np.testing.assert_allclose(
        clockwork.target("sines"), [2 * (v - low) / (high - low) - 1 for v in raw], atol=1e-12
    )


def test_the_default_models_have_about_a_thousand_parameters_counted_unit_by_unit():
    config = clockwork.Config()
    counts = {m: clockwork.make_model(m, config).num_params() for m in clockwork.MODELS}
    H = 31
    assert counts["rnn"] == H + H * H + 2 * H + H + 1 == 1086
    H = 15
    assert counts["lstm"] == 4 * H + 4 * H * H + 8 * H + H + 1 == 1096
    periods = np.repeat(config.cw_periods, config.cw_module_sizes)  # one per unit
    recurrent = sum(1 for r in periods for c in periods if c >= r)  # slow -> fast only
    H = len(periods)
    assert counts["cw"] == H + recurrent + 2 * H + H + 1 == 1051


def test_seeds_trained_side_by_side_get_the_updates_each_would_get_alone():
    """``per_model`` runs Adam and clipping per seed: one update of two stacked models
    equals one update of each model on its own (clipping active: tiny max norm)."""
    inner = optax.chain(optax.clip_by_global_norm(1e-3), optax.adam(0.1))
    stacked_params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([[1.0, 2.0, 3.0], [0.1, 0.0, -5.0]]), "b": jnp.array([4.0, 0.5])}
    opt = clockwork.per_model(inner)
    update = jax.jit(lambda g, p, opt: opt.update(g, opt.init(p), p)[0], static_argnums=2)
    updates = update(grads, stacked_params, opt)
    for s in range(2):
        alone = jax.tree.map(lambda a, s=s: a[s], stacked_params)
        expected = update(jax.tree.map(lambda a, s=s: a[s], grads), alone, inner)
        for name in ("w", "b"):
            np.testing.assert_allclose(updates[name][s], expected[name], rtol=1e-6)


def test_nmse_of_the_mean_is_one_and_of_the_target_is_zero():
    f = clockwork.target("paper")
    assert float(clockwork.nmse(np.full_like(f, f.mean()), f)) == pytest.approx(1.0)
    assert float(clockwork.nmse(f, f)) == 0.0
