"""Part-of-speech tagging with a bidirectional LSTM: words whose tag depends on context.

Many-to-many, synchronised: one tag per word. "book" is a verb in "book a
flight" and a noun in "read the book"; "can" is an auxiliary in "they can
fly" and a noun in "the can"; "saw" is both in "i saw the saw". A tagger that
looks at the word alone (the *unigram baseline*: each word's most frequent tag
in training) gets such words wrong whenever they take their rarer tag. An LSTM
reading left to right sees the words before; a bidirectional LSTM
(``rnnjax.layers.Bidirectional``: one LSTM forwards, one backwards from each
sentence's last word, outputs concatenated) also sees the words after, which
is what a sentence-initial "book" needs ("book a flight ." / "book prices will
run again .").

The model, an ``rnnjax.SequenceModel`` with ``read="every"``: word embeddings
``(V, E)`` (drawn from N(0, 0.1^2)) -> ``Bidirectional(LSTM(E, H), LSTM(E, H))``
over each right-padded sentence with its length -> ``rnnjax.Readout(2H, K)`` at
every word, trained with ``rnnjax.train.fit`` on the cross-entropy of the valid
(unpadded) words (``rnnjax.train.token_counts`` with the padding mask). With
``--compare-forward`` (on by default) the same model over a forward-only
``LSTM(E, H)`` -> ``Readout(H, K)`` is trained the same way, to show what the
backward direction adds.

The data:

- by default, sentences from a small probabilistic grammar with ambiguous
  words (``rnnjax/data/pos_grammar.py``; tags: a subset of the Universal POS
  tags: PRON, AUX, VERB, NOUN, DET, ADJ, ADP, ADV, PART, CCONJ, PUNCT);
- with ``--data FILE.conllu``, your own treebank in CoNLL-U format (e.g. a
  Universal Dependencies ``*-ud-train.conllu``): the FORM and UPOS columns,
  its last ``--test-fraction`` held out (``rnnjax/data/conllu.py``); words
  seen fewer than ``--min-count`` times in training become ``<unk>``.

Reported, for the unigram baseline and each LSTM: per-token accuracy, the
accuracy on *ambiguous* tokens (words seen with more than one tag in
training; their tag needs context), on ambiguous sentence-initial tokens
(only the right context can help) and the fraction of sentences tagged
without a mistake. Outputs in ``--out`` (default ``runs/pos_tagging``):
``config.json``, ``metrics.json``, ``accuracy.png``, ``ambiguous_words.png``
(accuracy per ambiguous word), and each tagger's training run
(:func:`rnnjax.train.fit`, replaced by the next run in the same ``--out``): its
log ``bilstm/metrics.jsonl`` (with its loss curves ``bilstm/metrics.png``) and
``lstm/metrics.jsonl``, and its trained parameters with the config, the final
checkpoint in ``bilstm/checkpoints/`` and ``lstm/checkpoints/``.

Expected result
---------------
``python -m experiments.pos_tagging`` (the default config: seed 0, 4,000
generated training and 1,000 held-out sentences, E = 32, H = 64 per direction,
800 Adam steps of 32 sentences for each model) takes 65 s of wall time on a
shared 2-core x86 CPU that was busy with other jobs (load average ~8, so an
idle one is faster; jax 0.10.2, CPython 3.11).
Held-out accuracy (10 of the 75 words take more than one tag; they are 27% of
the held-out tokens)::

                           unigram baseline   forward LSTM   bidirectional LSTM
    all tokens                  87.6%            98.2%            100.0%
    ambiguous words             54.0%            93.2%            100.0%
    ambiguous first words       55.6%            55.2%            100.0%
    whole sentences correct     30.3%            87.5%            100.0%

The forward LSTM is no better than the baseline on a sentence-initial
ambiguous word: it has not yet seen the words that decide ("book prices will
run again ." gets ``book/VERB`` from it, ``book/NOUN`` from the bidirectional
LSTM; "fly the plane ..." gets ``fly/NOUN`` and ``fly/VERB``). The numbers
repeat exactly from run to run on the same machine.

Shapes: ``B`` sentences, ``T`` words (padded), ``V`` vocabulary size, ``E``
embedding size, ``H`` hidden size per direction, ``K`` number of tags.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
from experiments.common import finish, new_figure, option, parse_config, positive, positive_number
from rnnjax.data.conllu import TaggedSentence, read_conllu
from rnnjax.data.pos_grammar import generate_tagged
from rnnjax.data.word_batches import WordVocab, pad_batch
from rnnjax.layers import Bidirectional
from rnnjax.train import FitResult, fit, init_train_state, make_train_step, token_counts

EVAL_BATCH = 256


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = option(0, "seed of the data, the parameters and the batches")
    data: str | None = option(
        None, "a CoNLL-U file to tag (FORM, UPOS); None: the generated corpus"
    )
    test_fraction: float = option(
        0.1, "with --data: the fraction of sentences (the last ones) held out"
    )
    lowercase: bool = option(True, "with --data: lowercase the words")
    min_count: int = option(2, "words seen fewer times in training become <unk>")
    train_size: int = option(4_000, "generated training sentences")
    test_size: int = option(1_000, "generated held-out sentences")
    embed_size: int = option(32, "word embedding size E")
    hidden_size: int = option(64, "hidden size H of each LSTM (each direction)")
    batch_size: int = option(32, "sentences per training step")
    steps: int = option(800, "training steps of each model")
    learning_rate: float = option(3e-3, "Adam learning rate")
    eval_every: int = option(100, "evaluate on the held-out set every this many steps")
    compare_forward: bool = option(True, "also train a forward-only LSTM tagger")
    bucket: int = option(
        16, "padded lengths are multiples of this (fewer shapes: fewer compilations)"
    )
    examples: tuple[str, ...] = option(
        (
            "book a flight .",
            "book prices will run again .",
            "i saw the saw .",
            "they can watch the can .",
            "fly the plane near the park .",
        ),
        "sentences (words separated by spaces) whose predicted tags are shown",
    )
    progress: bool = option(True, "show progress bars")

    def __post_init__(self):
        positive(
            self,
            "bucket",
            "min_count",
            "train_size",
            "test_size",
            "embed_size",
            "hidden_size",
            "batch_size",
            "steps",
            "eval_every",
        )
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"`test-fraction` must lie in (0, 1), got {self.test_fraction!r}")
        positive_number(self, "learning_rate")


# -- data ----------------------------------------------------------------------------


def load_corpus(config: Config) -> tuple[list[TaggedSentence], list[TaggedSentence], str]:
    """``(train, test, description)``."""
    if config.data is None:
        rng = np.random.default_rng(config.seed)
        corpus = generate_tagged(rng, config.train_size + config.test_size)
        return corpus[: config.train_size], corpus[config.train_size :], "generated grammar"
    corpus = read_conllu(config.data)
    if config.lowercase:
        corpus = [TaggedSentence(tuple(w.lower() for w in s.words), s.tags) for s in corpus]
    num_test = round(len(corpus) * config.test_fraction)
    if num_test < 1 or num_test >= len(corpus):
        raise ValueError(
            f"`test-fraction`={config.test_fraction} of {len(corpus)} sentences leaves an empty "
            "training or test set"
        )
    return corpus[:-num_test], corpus[-num_test:], config.data


class Encoded(NamedTuple):
    """Sentences as id arrays (ragged: one array per sentence)."""

    words: list[np.ndarray]  # word ids
    tags: list[np.ndarray]  # tag ids


def encode(sentences, vocab: WordVocab, tagset: WordVocab) -> Encoded:
    return Encoded(
        [vocab.encode(s.words) for s in sentences], [tagset.encode(s.tags) for s in sentences]
    )


def batch_of(data: Encoded, rows, bucket: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(word ids (B, T), tag ids (B, T), lengths (B,))``, ``T`` a multiple of ``bucket``."""
    words, lengths = pad_batch([data.words[i] for i in rows], multiple=bucket)
    tags, _ = pad_batch([data.tags[i] for i in rows], multiple=bucket)
    return words, tags, lengths


# -- the taggers ---------------------------------------------------------------------


def tagger(
    vocab_size: int, num_tags: int, embed_size: int, hidden_size: int, bidirectional: bool = True
) -> rnnjax.SequenceModel:
    """Embeddings ``(V, E)``, drawn from N(0, 0.1^2) -> ``Bidirectional(LSTM, LSTM)`` (or
    one forward LSTM) -> a readout at every word, ``(2H or H) -> K``."""
    lstm = rnnjax.LSTM(embed_size, hidden_size)
    return rnnjax.SequenceModel(
        Bidirectional(lstm, lstm) if bidirectional else lstm,
        num_tags,
        read="every",
        vocab_size=vocab_size,
        embed_size=embed_size,
        embed_init=rnnjax.initializers.Normal(0.1),
    )


def is_bidirectional(model: rnnjax.SequenceModel) -> bool:
    return isinstance(model.layer, Bidirectional)


@functools.partial(jax.jit, static_argnums=0)
def _predict(model: rnnjax.SequenceModel, params, words, lengths):
    return jnp.argmax(model.apply(params, words, lengths=lengths), axis=-1)


def predict(
    model: rnnjax.SequenceModel, params, data_words: list[np.ndarray], bucket: int = 16
) -> list[np.ndarray]:
    """Tag ids of every sentence, in batches of EVAL_BATCH rows padded to a multiple
    of ``bucket`` steps (one compiled shape per padded length; short batches are
    filled with empty sentences)."""
    order = np.argsort([len(w) for w in data_words], kind="stable")
    out: list[np.ndarray | None] = [None] * len(data_words)
    for start in range(0, len(order), EVAL_BATCH):
        rows = order[start : start + EVAL_BATCH]
        seqs = [data_words[i] for i in rows]
        seqs += [np.zeros(0, np.int32)] * (EVAL_BATCH - len(seqs))
        words, lengths = pad_batch(seqs, multiple=bucket)
        tags = np.asarray(_predict(model, params, words, lengths))
        for j, i in enumerate(rows):
            out[i] = tags[j, : lengths[j]]
    return out


def train(
    model: rnnjax.SequenceModel,
    config: Config,
    train_data: Encoded,
    test_data: Encoded,
    run_dir,
    key,
    plot: bool = True,
) -> FitResult:
    """Train a tagger with ``rnnjax.train.fit`` in ``run_dir``: its log (with its loss
    curves, ``metrics.png``, if ``plot``) and its final checkpoint, replacing a
    previous run's."""

    def loss_fn(params, batch, _key):
        words, tags, lengths = batch
        logits = model.apply(params, words, lengths=lengths)
        counts = token_counts(logits, tags, rnnjax.sequence_mask(lengths, words.shape[-1]))
        return counts.nll / counts.count, {"accuracy": counts.correct / counts.count}

    def batch_fn(step):
        rng = np.random.default_rng((config.seed, step))
        rows = rng.integers(len(train_data.words), size=config.batch_size)
        return batch_of(train_data, rows, config.bucket)

    def eval_fn(params):
        predicted = np.concatenate(predict(model, params, test_data.words, config.bucket))
        return {"accuracy": float(np.mean(predicted == np.concatenate(test_data.tags)))}

    optimizer = optax.adam(config.learning_rate)
    state = init_train_state(model.init(key), optimizer, key)
    num_tokens = sum(len(w) for w in train_data.words) / len(train_data.words) * config.batch_size
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
        items_per_step=round(num_tokens),
        progress=config.progress,
        plot=plot,
    )


# -- evaluation ------------------------------------------------------------------------


def unigram_tagger(train_sentences) -> tuple[dict[str, str], str]:
    """Each word's most frequent training tag (ties: alphabetical), and the most
    frequent tag of all, for unseen words."""
    per_word = collections.defaultdict(collections.Counter)
    for s in train_sentences:
        for w, t in zip(s.words, s.tags, strict=True):
            per_word[w][t] += 1
    overall = collections.Counter(t for s in train_sentences for t in s.tags)
    best = {w: min(c, key=lambda t: (-c[t], t)) for w, c in per_word.items()}
    return best, min(overall, key=lambda t: (-overall[t], t))


def ambiguous_words(train_sentences) -> set[str]:
    """Words that take more than one tag in the training sentences."""
    tags_of = collections.defaultdict(set)
    for s in train_sentences:
        for w, t in zip(s.words, s.tags, strict=True):
            tags_of[w].add(t)
    return {w for w, tags in tags_of.items() if len(tags) > 1}


def scores(test_sentences, predicted: list[list[str]], ambiguous: set[str]) -> dict[str, float]:
    """Accuracy on all tokens, on ambiguous tokens, on ambiguous first words, and
    the fraction of sentences without a mistake."""
    hits, amb, first, perfect = [], [], [], []
    for s, tags in zip(test_sentences, predicted, strict=True):
        right = [p == g for p, g in zip(tags, s.tags, strict=True)]
        hits += right
        amb += [r for w, r in zip(s.words, right, strict=True) if w in ambiguous]
        if s.words[0] in ambiguous:
            first.append(right[0])
        perfect.append(all(right))
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")
    return {
        "token": mean(hits),
        "ambiguous": mean(amb),
        "ambiguous_first": mean(first),
        "sentence": mean(perfect),
    }


def per_word_accuracy(test_sentences, predicted, words) -> dict[str, float]:
    right = collections.defaultdict(list)
    for s, tags in zip(test_sentences, predicted, strict=True):
        for w, p, g in zip(s.words, tags, s.tags, strict=True):
            if w in words:
                right[w].append(p == g)
    return {w: float(np.mean(right[w])) for w in words if right[w]}


# -- figures ----------------------------------------------------------------------------

LABELS = {
    "token": "all tokens",
    "ambiguous": "ambiguous words",
    "ambiguous_first": "ambiguous\nfirst words",
    "sentence": "whole sentences\ncorrect",
}


def plot_accuracy(results: dict[str, dict[str, float]], fractions: dict[str, float], path) -> None:
    fig, ax = new_figure(7.5, 4.0)
    kinds = list(LABELS)
    width = 0.8 / len(results)
    x = np.arange(len(kinds))
    for i, (name, acc) in enumerate(results.items()):
        values = [acc[k] for k in kinds]
        bars = ax.bar(
            x + (i - (len(results) - 1) / 2) * width,
            values,
            width,
            label=name,
            color=["0.6", "C0", "C1"][i % 3],
        )
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=7, padding=2)
    ax.set_xticks(
        x,
        [
            LABELS[k] + (f"\n({fractions[k]:.0%} of tokens)" if k in fractions else "")
            for k in kinds
        ],
    )
    ax.set(
        ylim=(0, 1.25),
        ylabel="held-out accuracy",
        title="Tagging: the tag of an ambiguous word needs its context",
    )
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(loc="upper center", ncol=3, fontsize=8)
    fig.savefig(path, dpi=120)


def plot_per_word(per_word: dict[str, dict[str, float]], counts: dict[str, int], path) -> None:
    words = sorted(next(iter(per_word.values())), key=lambda w: -counts[w])[:15]
    fig, ax = new_figure(8.0, 3.8)
    width = 0.8 / len(per_word)
    x = np.arange(len(words))
    for i, (name, acc) in enumerate(per_word.items()):
        ax.bar(
            x + (i - (len(per_word) - 1) / 2) * width,
            [acc.get(w, np.nan) for w in words],
            width,
            label=name,
            color=["0.6", "C0", "C1"][i % 3],
        )
    ax.set_xticks(x, [f"{w}\n({counts[w]})" for w in words], fontsize=8)
    ax.set(
        ylim=(0, 1.2),
        ylabel="held-out accuracy",
        title="Accuracy per ambiguous word (held-out occurrences in brackets)",
    )
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(loc="upper center", ncol=3, fontsize=8)
    fig.savefig(path, dpi=120)


# -- main ----------------------------------------------------------------------------------


def main(argv=None) -> dict:
    """Train the taggers, compare them with the unigram baseline; returns the metrics."""
    config, run = parse_config(
        Config,
        argv,
        prog="python -m experiments.pos_tagging",
        default_out="runs/pos_tagging",
        description="Part-of-speech tagging with a bidirectional LSTM, against a forward LSTM "
        "and the most-frequent-tag baseline.",
    )
    start = time.perf_counter()
    try:
        train_sentences, test_sentences, source = load_corpus(config)
    except (OSError, ValueError) as e:
        raise SystemExit(f"python -m experiments.pos_tagging: error: {e}") from None
    vocab = WordVocab.from_sentences([s.words for s in train_sentences], min_count=config.min_count)
    tagset = WordVocab.from_sentences([s.tags for s in train_sentences], specials=())
    unknown_tags = {t for s in test_sentences for t in s.tags} - set(tagset.words)
    if unknown_tags:
        tagset = WordVocab((*tagset.words, *sorted(unknown_tags)))  # never predicted, still scored
    train_data = encode(train_sentences, vocab, tagset)
    test_data = encode(test_sentences, vocab, tagset)
    ambiguous = ambiguous_words(train_sentences)
    test_tokens = [w for s in test_sentences for w in s.words]
    fractions = {"ambiguous": float(np.mean([w in ambiguous for w in test_tokens]))}

    print("part-of-speech tagging: the tag of an ambiguous word depends on its context")
    print(
        f"  data:  {source}: {len(train_sentences):,} training and {len(test_sentences):,} "
        f"held-out sentences ({len(test_tokens):,} tokens), {vocab.size:,} words, "
        f"{tagset.size} tags; {len(ambiguous)} words take more than one tag, "
        f"{fractions['ambiguous']:.0%} of the held-out tokens"
    )

    best, fallback = unigram_tagger(train_sentences)
    predictions = {
        "unigram baseline": [[best.get(w, fallback) for w in s.words] for s in test_sentences]
    }
    models = {"bilstm": tagger(vocab.size, tagset.size, config.embed_size, config.hidden_size)}
    if config.compare_forward:
        models["lstm"] = tagger(
            vocab.size, tagset.size, config.embed_size, config.hidden_size, bidirectional=False
        )
    names = {"bilstm": "bidirectional LSTM", "lstm": "forward LSTM"}
    fits, trained, seconds = {}, {}, {}
    for i, (key_name, model) in enumerate(models.items()):
        print(
            f"  {names[key_name]}: embeddings ({vocab.size} x {config.embed_size}) -> "
            f"{'Bidirectional(LSTM, LSTM)' if is_bidirectional(model) else 'LSTM'}"
            f"({config.embed_size} -> {config.hidden_size}) -> Readout({model.readout.hidden_size} "
            f"-> {tagset.size})"
        )
        t0 = time.perf_counter()
        key = jax.random.fold_in(jax.random.key(config.seed), i)
        fits[key_name] = train(
            model, config, train_data, test_data, run / key_name, key, plot=is_bidirectional(model)
        )
        trained[key_name] = fits[key_name].params
        seconds[key_name] = time.perf_counter() - t0
        tag_ids = predict(model, trained[key_name], test_data.words, config.bucket)
        predictions[names[key_name]] = [tagset.decode(t) for t in tag_ids]
    # plotted in the order baseline, forward, bidirectional
    order = ["unigram baseline", "forward LSTM", "bidirectional LSTM"]
    predictions = {k: predictions[k] for k in order if k in predictions}
    results = {name: scores(test_sentences, p, ambiguous) for name, p in predictions.items()}
    first_amb = [s.words[0] in ambiguous for s in test_sentences]
    fractions["ambiguous_first"] = float(
        sum(first_amb) / len(test_tokens)
    )  # of the tokens, like the other fractions

    print()
    print(f"held-out accuracy        {'':>2}" + "".join(f"{n:>20}" for n in results))
    for kind, label in LABELS.items():
        print(
            f"  {label.replace(chr(10), ' '):<24}"
            + "".join(f"{results[n][kind]:>20.1%}" for n in results)
        )
    print()
    if config.examples:
        print(
            "tags of a few sentences ("
            + " / ".join(n for n in predictions if n != "unigram baseline")
            + "):"
        )
        sents = [
            s.lower().split() if config.data and config.lowercase else s.split()
            for s in config.examples
        ]
        ids = [vocab.encode(s) for s in sents]
        tagged = {
            k: [tagset.decode(t) for t in predict(m, trained[k], ids, config.bucket)]
            for k, m in models.items()
        }
        for j, s in enumerate(sents):
            cols = [
                " ".join(f"{w}/{t}" for w, t in zip(s, tagged[k][j], strict=True))
                for k in reversed(list(models))
            ]
            print("  " + "\n    ".join(cols))
        print()

    counts = collections.Counter(w for w in test_tokens if w in ambiguous)
    per_word = {
        name: per_word_accuracy(test_sentences, p, set(counts)) for name, p in predictions.items()
    }
    plot_accuracy(results, fractions, run / "accuracy.png")
    if counts:
        plot_per_word(per_word, counts, run / "ambiguous_words.png")

    short = {"unigram baseline": "unigram", "forward LSTM": "lstm", "bidirectional LSTM": "bilstm"}
    metrics = {
        "train_sentences": len(train_sentences),
        "test_sentences": len(test_sentences),
        "test_tokens": len(test_tokens),
        "vocab_size": vocab.size,
        "num_tags": tagset.size,
        "ambiguous_token_fraction": fractions["ambiguous"],
    }
    for name, acc in results.items():
        for kind, value in acc.items():  # (nan: no such token held out; left out)
            if not np.isnan(value):
                metrics[f"{short[name]}_{kind}_accuracy"] = value
    for key_name, s in seconds.items():
        metrics[f"{key_name}_train_seconds"] = s
        metrics[f"{key_name}_checkpoint"] = fits[key_name].checkpoint
    metrics["seconds"] = time.perf_counter() - start
    print(
        f"done in {metrics['seconds']:.0f} s; wrote config.json, metrics.json, accuracy.png, "
        f"ambiguous_words.png, {'/, '.join(models)}/ (logs, checkpoints) to {run}/"
    )
    return finish(run, metrics, config=config)  # fit ran in the subdirectories


if __name__ == "__main__":
    main()
