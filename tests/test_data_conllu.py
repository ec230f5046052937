"""``rnnjax.data.conllu``: FORM and UPOS of every syntactic word of a CoNLL-U
file; comments, multiword-token ranges and empty nodes skipped."""

import pytest

from rnnjax.data.conllu import UPOS_TAGS, TaggedSentence, parse_conllu, read_conllu


def row(*fields):
    return "\t".join(fields)


def word(i, form, upos, head="0", deprel="root"):
    return row(str(i), form, form.lower(), upos, "_", "_", head, deprel, "_", "_")


SAMPLE = "\n".join(
    [
        "# newdoc id = test",
        "# sent_id = 1",
        "# text = I can book it.",
        word(1, "I", "PRON"),
        word(2, "can", "AUX"),
        word(3, "book", "VERB"),
        word(4, "it", "PRON"),
        word(5, ".", "PUNCT"),
        "",
        "# sent_id = 2",
        "# text = Vámonos al mar.",
        row("1-2", "Vámonos", "_", "_", "_", "_", "_", "_", "_", "_"),  # multiword token
        word(1, "Vamos", "VERB"),
        word(2, "nos", "PRON"),
        row("3-4", "al", "_", "_", "_", "_", "_", "_", "_", "_"),
        word(3, "a", "ADP"),
        word(4, "el", "DET"),
        row("4.1", "ido", "ir", "VERB", "_", "_", "_", "_", "0:root", "_"),  # empty node
        word(5, "mar", "NOUN"),
        word(6, ".", "PUNCT"),
        "",
        "",
        "# sent_id = 3 (the file does not end with a blank line)",
        word(1, "Read", "VERB"),
        word(2, "the", "DET"),
        word(3, "book", "NOUN"),
    ]
)


def test_parses_words_and_tags_skipping_comments_ranges_and_empty_nodes():
    assert parse_conllu(SAMPLE) == [
        TaggedSentence(("I", "can", "book", "it", "."), ("PRON", "AUX", "VERB", "PRON", "PUNCT")),
        TaggedSentence(
            ("Vamos", "nos", "a", "el", "mar", "."), ("VERB", "PRON", "ADP", "DET", "NOUN", "PUNCT")
        ),
        TaggedSentence(("Read", "the", "book"), ("VERB", "DET", "NOUN")),
    ]


def test_reads_a_file_the_test_writes(tmp_path):
    path = tmp_path / "tiny.conllu"
    path.write_text(SAMPLE + "\n\n", encoding="utf-8")
    sentences = read_conllu(path)
    assert [len(s.words) for s in sentences] == [5, 6, 3]
    assert all(set(s.tags) <= set(UPOS_TAGS) for s in sentences)
    crlf = tmp_path / "windows.conllu"
    crlf.write_bytes((SAMPLE + "\n").replace("\n", "\r\n").encode("utf-8"))
    assert read_conllu(crlf) == sentences


@pytest.mark.parametrize(
    "line, message",
    [
        (row("1", "word", "word", "NOUN"), "line 2: a word line must have 10 tab-separated fields"),
        (word("x", "word", "NOUN"), "line 2: the ID must be an integer"),
        (word(1, "word", "_"), "line 2: word 1 has no FORM or no UPOS"),
    ],
)
def test_a_malformed_line_is_an_error_naming_the_file_and_line(line, message):
    with pytest.raises(ValueError, match=message):
        parse_conllu("# a comment\n" + line + "\n", source="mine.conllu")
    with pytest.raises(ValueError, match="mine.conllu"):
        parse_conllu("# a comment\n" + line + "\n", source="mine.conllu")


def test_missing_and_empty_files_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no CoNLL-U file"):
        read_conllu(tmp_path / "absent.conllu")
    empty = tmp_path / "empty.conllu"
    empty.write_text("# only a comment\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no sentence"):
        read_conllu(empty)
