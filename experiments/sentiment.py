"""Sentiment of short sentences, where word order matters: an LSTM against a bag of words.

The lecture notes' many-to-one problem ("they are happy" -> positive): read a
sentence, answer once. The sentences come from a small grammar
(``rnnjax/data/sentiment.py``) with negation and contrast, so that the same
words in another order can mean the opposite::

    they are happy                   positive
    they are not happy               negative   ("not" flips a clause)
    they are happy but tired         negative   (after "but", the second clause decides)
    they are tired but happy         positive
    they are happy although tired    positive   (with "although", the first clause decides)

Two classifiers are trained on the same sentences with ``rnnjax.train.fit``:

- the sequence model, an ``rnnjax.SequenceModel`` with ``read="last"``: learned
  word embeddings ``(V, E)`` (drawn from N(0, 0.1^2)) -> ``rnnjax.LSTM`` (E -> H;
  or any cell by name, ``--cell``) -> ``rnnjax.Readout`` (H -> 2) at each
  sentence's last valid word;
- the bag-of-words baseline: the word counts of the sentence ``(V,)`` ->
  ``rnnjax.Readout`` (V -> 2), i.e. logistic regression on a count vector,
  trained with the same optimizer. It sees which words occur and how often,
  never in which order.

Both are scored on held-out sentences (none of them in the training set),
overall and by kind of sentence:

- *order-sensitive*: another sentence of the language has the same bag of
  words and the other label ("happy but tired" / "tired but happy"; "not happy
  but glad" / "happy but not glad"). Every such bag belongs to sentences of
  both labels in equal measure, so any bag-of-words model is at chance here;
  only the order tells them apart;
- *bag decides*: the bag of words fixes the label, split into sentences without
  "not" (a linear bag of words can learn these: the adjectives vote) and with
  "not" ("they are not happy", "not happy although not glad"), where a linear
  function of counts fails for another reason: it cannot flip the sign of an
  adjective's vote when "not" is present (the XOR of adjective and negation).

Outputs in ``--out`` (default ``runs/sentiment``): ``config.json``,
``metrics.json``, ``accuracy.png`` (both models by kind of sentence, chance
drawn), ``learning_curves.png`` (held-out accuracy of both during training), and
each model's training run (:func:`rnnjax.train.fit`, replaced by the next run in
the same ``--out``): its log ``lstm/metrics.jsonl`` (with its loss curves
``lstm/metrics.png``) and ``bow/metrics.jsonl``, and its trained parameters with
the config, the final checkpoint in ``lstm/checkpoints/`` and ``bow/checkpoints/``.

Expected result
---------------
``python -m experiments.sentiment`` (the default config: seed 0, 20,000
training and 2,000 held-out sentences, E = 32, H = 64, 600 Adam steps of 64
sentences for each model) takes 34 s of wall time on a shared 2-core x86 CPU
that was busy with other jobs (load average ~7, so an idle one is faster; jax
0.10.2, CPython 3.11). Held-out accuracy::

                                LSTM   bag of words
    all                        100.0%         54.0%
    bag decides, no 'not'      100.0%         83.4%   (23% of the held-out sentences)
    bag decides, with 'not'    100.0%         21.2%   (13%)
    order-sensitive            100.0%         50.3%   (64%: chance for any bag of words)

    p(positive), LSTM / bag of words:
    'they are happy'                 1.00 / 0.61   positive
    'they are not happy'             0.00 / 0.61   negative
    'they are happy but tired'       0.00 / 0.55   negative
    'they are tired but happy'       1.00 / 0.55   positive

The bag of words gives "happy but tired" and "tired but happy" the same
probability (the same counts), and "not" cannot flip its vote: it is worse
than chance on the negated sentences. The numbers repeat exactly from run to
run on the same machine.

Shapes: ``B`` sentences in a batch, ``T`` words (padded), ``V`` vocabulary
size, ``E`` embedding size, ``H`` hidden size.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
from experiments.common import finish, new_figure, option, parse_config, positive, positive_number
from rnnjax.data.sentiment import NOT, SentimentGrammar
from rnnjax.data.word_batches import WordVocab, pad_batch
from rnnjax.train import FitResult, fit, init_train_state, make_train_step, token_counts

CELLS = tuple(c for c in rnnjax.CELL_NAMES if c != "clockwork")  # clockwork needs its modules
KINDS = {
    "all": "all",
    "bag_no_not": "bag decides,\nno 'not'",
    "bag_with_not": "bag decides,\nwith 'not'",
    "order_sensitive": "order-sensitive",
}
"""Metric name -> label of the kinds of held-out sentence scored: all of them; those whose bag of words
fixes the label (no other sentence has the same bag and the other label),
without and with "not"; and the order-sensitive rest."""


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = option(0, "seed of the data, the parameters and the batches")
    train_size: int = option(20_000, "training sentences drawn from the grammar")
    test_size: int = option(2_000, "held-out sentences (none of them in the training set)")
    cell: str = option("lstm", f"recurrent cell: one of {list(CELLS)} (rnn: tanh Elman)")
    embed_size: int = option(32, "word embedding size E")
    hidden_size: int = option(64, "hidden size H")
    batch_size: int = option(64, "sentences per training step")
    steps: int = option(600, "training steps of each model")
    learning_rate: float = option(3e-3, "Adam learning rate of the recurrent model")
    bow_learning_rate: float = option(3e-2, "Adam learning rate of the bag-of-words model")
    eval_every: int = option(25, "evaluate on the held-out set every this many steps")
    examples: tuple[str, ...] = option(
        (
            "they are happy",
            "they are not happy",
            "they are happy but tired",
            "they are tired but happy",
            "they are happy although tired",
            "they are not happy but calm",
            "they are happy but not calm",
        ),
        "sentences (of the grammar) whose predictions are shown",
    )
    progress: bool = option(True, "show progress bars")

    def __post_init__(self):
        positive(
            self,
            "train_size",
            "test_size",
            "embed_size",
            "hidden_size",
            "batch_size",
            "steps",
            "eval_every",
        )
        if self.test_size > 50_000:
            raise ValueError(
                f"`test-size` must be at most 50,000 (a quarter of the grammar's ~197,000 "
                f"sentences), got {self.test_size}"
            )
        if self.cell not in CELLS:
            raise ValueError(f"`cell` must be one of {list(CELLS)}, got {self.cell!r}")
        positive_number(self, "learning_rate", "bow_learning_rate")
        grammar = SentimentGrammar()
        for sentence in self.examples:
            try:
                grammar.parse(sentence.split())
            except ValueError as e:
                raise ValueError(f"`examples`: {e}") from None


# -- data ------------------------------------------------------------------------


class Split(NamedTuple):
    """A set of sentences as arrays, with what the evaluation needs to know about each."""

    ids: np.ndarray  # (N, T) int32 word ids, right-padded with 0 (<pad>)
    lengths: np.ndarray  # (N,) int32
    labels: np.ndarray  # (N,) int32, 1 positive, 0 negative
    kinds: dict[str, np.ndarray]  # KINDS' names -> (N,) bool


def make_split(grammar: SentimentGrammar, vocab: WordVocab, sentences, num_steps: int) -> Split:
    ids, lengths = pad_batch([vocab.encode(s) for s in sentences], min_length=num_steps)
    sensitive = np.array([grammar.order_sensitive(s) for s in sentences])
    negated = np.array([NOT in s for s in sentences])
    kinds = dict(
        zip(
            KINDS,
            (
                np.ones(len(sentences), bool),
                ~sensitive & ~negated,
                ~sensitive & negated,
                sensitive,
            ),
            strict=True,
        )
    )
    labels = np.array([grammar.label(s) for s in sentences], np.int32)
    return Split(ids, lengths, labels, kinds)


def draw_sentences(grammar: SentimentGrammar, rng, train_size: int, test_size: int):
    """``(train, test)``: first ``test_size`` distinct held-out sentences, then
    ``train_size`` training sentences drawn from the grammar with every held-out
    sentence rejected (repeats among them allowed, as drawn), so that no
    held-out sentence is ever seen in training."""
    test, held_out = [], set()
    while len(test) < test_size:
        for s in grammar.sample(rng, test_size):
            if s not in held_out and len(test) < test_size:
                held_out.add(s)
                test.append(s)
    train = []
    while len(train) < train_size:
        train += [s for s in grammar.sample(rng, train_size) if s not in held_out]
    return train[:train_size], test


# -- the two models ------------------------------------------------------------


def sequence_model(config: Config, vocab_size: int) -> rnnjax.SequenceModel:
    """Embeddings ``(V, E)``, drawn from N(0, 0.1^2) -> the cell (E -> H), read at each
    sentence's last valid step -> readout (H -> 2)."""
    return rnnjax.SequenceModel(
        rnnjax.make_cell(config.cell, config.embed_size, config.hidden_size),
        2,
        read="last",
        vocab_size=vocab_size,
        embed_size=config.embed_size,
        embed_init=rnnjax.initializers.Normal(0.1),
    )


@dataclasses.dataclass(frozen=True)
class BagOfWords:
    """Word counts ``(B, V)`` -> readout: logistic regression on a count vector."""

    vocab_size: int

    @property
    def readout(self) -> rnnjax.Readout:
        return rnnjax.Readout(self.vocab_size, 2)

    def init(self, key) -> rnnjax.ReadoutParams:
        return self.readout.init(key)

    def apply(self, params: rnnjax.ReadoutParams, ids, *, lengths):
        """``(B, T)`` ids, ``(B,)`` lengths -> ``(B, 2)`` class logits."""
        valid = rnnjax.sequence_mask(lengths, ids.shape[-1])  # (B, T)
        one_hot = jax.nn.one_hot(ids, self.vocab_size, dtype=jnp.float32)
        counts = jnp.sum(one_hot * valid[..., None], axis=-2)  # (B, V): the order is gone
        return self.readout(params, counts)


jax.tree_util.register_static(BagOfWords)


@functools.partial(jax.jit, static_argnums=0)
def _predict(model, params, ids, lengths):
    return jax.nn.softmax(model.apply(params, ids, lengths=lengths), axis=-1)[:, 1]  # p(positive)


def accuracies(model, params, split: Split) -> dict[str, float]:
    """Accuracy on each kind of sentence of ``split`` (KINDS)."""
    correct = (np.asarray(_predict(model, params, split.ids, split.lengths)) > 0.5) == split.labels
    return {
        kind: float(np.mean(correct[mask])) if mask.any() else float("nan")
        for kind, mask in split.kinds.items()
    }


def train(
    model,
    config: Config,
    train_split: Split,
    test_split: Split,
    run_dir: Path,
    key,
    learning_rate: float,
    plot: bool = True,
) -> FitResult:
    """Train ``model`` with ``rnnjax.train.fit`` in ``run_dir``: its log (with its loss
    curves, ``metrics.png``, if ``plot``) and its final checkpoint, replacing a
    previous run's."""

    def loss_fn(params, batch, _key):
        ids, lengths, labels = batch
        logits = model.apply(params, ids, lengths=lengths)
        counts = token_counts(logits, labels)
        return counts.nll / counts.count, {"accuracy": counts.correct / counts.count}

    def batch_fn(step):
        rng = np.random.default_rng((config.seed, step))
        rows = rng.integers(len(train_split.labels), size=config.batch_size)
        return train_split.ids[rows], train_split.lengths[rows], train_split.labels[rows]

    def eval_fn(params):
        acc = accuracies(model, params, test_split)
        return {"accuracy": acc["all"], "order_sensitive_accuracy": acc["order_sensitive"]}

    optimizer = optax.adam(learning_rate)
    state = init_train_state(model.init(key), optimizer, key)
    return fit(
        make_train_step(loss_fn, optimizer),
        state,
        batch_fn,
        config.steps,
        run_dir=run_dir,
        config=config,
        overwrite=True,
        eval_fn=eval_fn,
        eval_every=config.eval_every,
        items_per_step=config.batch_size,
        progress=config.progress,
        plot=plot,
    )


# -- figures -------------------------------------------------------------------------


def plot_accuracy(results: dict[str, dict[str, float]], fractions: dict[str, float], path) -> None:
    fig, ax = new_figure(7.5, 4.0)
    width = 0.38
    x = np.arange(len(KINDS))
    for i, (name, acc) in enumerate(results.items()):
        values = [acc[k] for k in KINDS]
        bars = ax.bar(x + (i - 0.5) * width, values, width, label=name, color=f"C{i}")
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=8, padding=2)
    ax.axhline(0.5, color="gray", ls="--", lw=1, label="chance (50%)")
    ax.set_xticks(x, [f"{label}\n({fractions[k]:.0%} of test)" for k, label in KINDS.items()])
    ax.set(
        ylim=(0, 1.25),
        ylabel="held-out accuracy",
        title="Sentiment: what a bag of words loses without word order",
        xlabel="bag decides: no sentence with the same words has the other label; "
        "order-sensitive: one has",
    )
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(loc="upper center", ncol=3, fontsize=8)
    fig.savefig(path, dpi=120)


def plot_learning_curves(fits: dict[str, FitResult], path) -> None:
    fig, ax = new_figure(7.0, 3.8)
    for i, (name, fitted) in enumerate(fits.items()):
        rows = fitted.eval
        steps = [r["step"] for r in rows]
        ax.plot(steps, [r["accuracy"] for r in rows], "-", color=f"C{i}", label=f"{name}: all")
        ax.plot(
            steps,
            [r["order_sensitive_accuracy"] for r in rows],
            ":",
            color=f"C{i}",
            label=f"{name}: order-sensitive",
        )
    ax.axhline(0.5, color="gray", ls="--", lw=1, label="chance")
    ax.set(
        xlabel="training step",
        ylabel="held-out accuracy",
        ylim=(0.3, 1.02),
        title="Held-out accuracy during training",
    )
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)


# -- main -----------------------------------------------------------------------------


def main(argv=None) -> dict:
    """Train both classifiers, compare them, write the run directory; returns the metrics."""
    config, run = parse_config(
        Config,
        argv,
        prog="python -m experiments.sentiment",
        default_out="runs/sentiment",
        description="Sentence sentiment where word order matters: an LSTM (many-to-one) "
        "against a bag-of-words logistic regression.",
    )
    start = time.perf_counter()
    grammar = SentimentGrammar()
    rng = np.random.default_rng(config.seed)
    train_sentences, test_sentences = draw_sentences(
        grammar, rng, config.train_size, config.test_size
    )
    vocab = WordVocab.from_sentences([grammar.words])  # every word of the grammar, <pad>, <unk>
    num_steps = max(len(s) for s in train_sentences + test_sentences)
    train_split = make_split(grammar, vocab, train_sentences, num_steps)
    test_split = make_split(grammar, vocab, test_sentences, num_steps)
    fractions = {k: float(np.mean(m)) for k, m in test_split.kinds.items()}  # of the test set

    print("sentiment: word order matters; an RNN (many-to-one) against a bag of words")
    print(
        f"  data:  {len(train_sentences):,} training sentences, {len(test_sentences):,} held-out "
        f"(distinct, unseen), {vocab.size} words; {fractions['order_sensitive']:.0%} of the "
        "held-out ones are order-sensitive"
    )
    key_seq, key_bow = jax.random.split(jax.random.key(config.seed))
    sequence = sequence_model(config, vocab.size)
    bow = BagOfWords(vocab.size)
    name = type(sequence.layer).__name__
    print(
        f"  {name}: embeddings ({vocab.size} x {config.embed_size}) -> {name}({config.embed_size} "
        f"-> {config.hidden_size}) -> Readout(2); bag of words: counts ({vocab.size}) -> Readout(2)"
    )
    train_start = time.perf_counter()
    fit_seq = train(
        sequence, config, train_split, test_split, run / config.cell, key_seq, config.learning_rate
    )
    seq_seconds = time.perf_counter() - train_start
    fit_bow = train(
        bow,
        config,
        train_split,
        test_split,
        run / "bow",
        key_bow,
        config.bow_learning_rate,
        plot=False,
    )
    params_seq, params_bow = fit_seq.params, fit_bow.params
    results = {
        name: accuracies(sequence, params_seq, test_split),
        "bag of words (linear)": accuracies(bow, params_bow, test_split),
    }

    print()
    print(f"held-out accuracy             {name:>6}  bag of words")
    for kind, label in KINDS.items():
        print(
            f"  {label.replace(chr(10), ' '):<28} {results[name][kind]:>6.1%}  "
            f"{results['bag of words (linear)'][kind]:>12.1%}   ({fractions[kind]:.0%} of the held-out "
            "sentences)"
        )
    print()
    print(f"p(positive) for a few sentences ({name} / bag of words; the rule's label):")
    examples = [tuple(s.split()) for s in config.examples]
    if examples:
        ids, lengths = pad_batch([vocab.encode(s) for s in examples], min_length=num_steps)
        p_seq = np.asarray(_predict(sequence, params_seq, ids, lengths))
        p_bow = np.asarray(_predict(bow, params_bow, ids, lengths))
        for s, a, b in zip(examples, p_seq, p_bow, strict=True):
            label = "positive" if grammar.label(s) else "negative"
            print(f"  {' '.join(s)!r:<36} {a:.2f} / {b:.2f}   {label}")
    plot_accuracy(results, fractions, run / "accuracy.png")
    plot_learning_curves({name: fit_seq, "bag of words": fit_bow}, run / "learning_curves.png")

    metrics = {
        "train_size": len(train_sentences),
        "test_size": len(test_sentences),
        "vocab_size": vocab.size,
    }
    for model_key, acc in (("rnn", results[name]), ("bow", results["bag of words (linear)"])):
        for kind in KINDS:  # (a kind absent from the held-out set is left out)
            if fractions[kind] > 0:
                metrics[f"{model_key}_{kind}_accuracy"] = acc[kind]
    metrics.update(
        {
            **{f"{kind}_fraction": fractions[kind] for kind in KINDS if kind != "all"},
            "rnn_train_seconds": seq_seconds,
            "rnn_checkpoint": fit_seq.checkpoint,
            "bow_checkpoint": fit_bow.checkpoint,
            "seconds": time.perf_counter() - start,
        }
    )
    print(
        f"\ndone in {metrics['seconds']:.0f} s; wrote config.json, metrics.json, accuracy.png, "
        f"learning_curves.png, {config.cell}/ and bow/ (logs, checkpoints) to {run}/"
    )
    return finish(run, metrics, config=config)  # fit ran in the subdirectories


if __name__ == "__main__":
    main()
