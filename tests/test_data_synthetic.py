"""Synthetic acceptability data: broken copies, balance, sources."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from autoprune.data.synthetic import (
    EDITS,
    FLIPS,
    acceptable_sentences,
    break_sentence,
    read_sentences,
    synthetic_acceptability,
)
from autoprune.data.dataset import Split
from autoprune.errors import DataError

SENTENCES = ["The sailors rode the breeze clear of the rocks.",
             "John is reading a book about ships.",
             "They have seen this film before?",
             "Mary gave him the keys to her car!",
             "The more we study verbs, the crazier they get."]


def test_broken_copies_differ_keep_their_ending_and_start_with_a_capital() -> None:
    rng = np.random.default_rng(0)
    vocabulary = [w for s in SENTENCES for w in s.rstrip(".?!").split()[1:]]
    lowercase = {w for w in vocabulary if w.islower()}
    broken = [(s, break_sentence(s, rng, vocabulary, lowercase)) for s in SENTENCES * 40]
    changed = [(s, b) for s, b in broken if b is not None]
    assert len(changed) > 150
    for sentence, copy in changed:
        assert copy != sentence and copy[-1] == sentence[-1]
        assert copy[0].isupper()
        # No full stop, question or exclamation mark moved inside the sentence.
        assert not any(mark in copy[:-1] for mark in ".?!")
        # "The" moved from the front is lowercased; "John" and "Mary" keep their capitals.
        assert " The " not in copy
    # Deletions, insertions and same-length edits (swap, move, flip) all occur.
    sizes = Counter(len(b.split()) - len(s.split()) for s, b in changed)
    assert {-1, 0, 1} <= set(sizes)


def test_flips_are_agreement_words() -> None:
    rng = np.random.default_rng(1)
    flipped = set()
    for _ in range(200):
        copy = break_sentence("John is reading a book.", rng, [])
        if copy is not None and len(copy.split()) == 5:
            flipped |= set(copy.lower().rstrip(".").split()) - {"john", "is", "reading", "a", "book"}
    assert flipped <= set(FLIPS.values()) and {"are", "an"} <= flipped
    assert break_sentence("Too short.", rng, ["word"]) is None
    assert len(EDITS) == 5


def test_synthetic_split_is_balanced_paired_and_seeded() -> None:
    split = synthetic_acceptability([*SENTENCES, SENTENCES[0], "Two words.", " "], seed=3)
    assert len(split) == 2 * (len(SENTENCES) + 1)  # the two-word and empty lines left out
    assert split.labels.sum() == len(SENTENCES) + 1
    good = sorted(t[0] for t, y in zip(split.texts, split.labels) if y == 1)
    assert good == sorted([*SENTENCES, SENTENCES[0]])  # a repeated sentence stays repeated
    assert not {t[0] for t, y in zip(split.texts, split.labels) if y == 0} & set(SENTENCES)
    split = synthetic_acceptability(SENTENCES, seed=3)
    assert synthetic_acceptability(SENTENCES, seed=3).texts == split.texts
    assert synthetic_acceptability(SENTENCES, seed=4).texts != split.texts
    with pytest.raises(DataError, match="no sentence of three words"):
        synthetic_acceptability(["Hi.", ""], seed=0)


def test_sentences_from_a_glue_directory_and_a_text_file(tmp_path: Path) -> None:
    mrpc = tmp_path / "MRPC"
    mrpc.mkdir()
    (mrpc / "train.tsv").write_text(
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t1\t2\tHe said "yes" to them.\tHe agreed with them.\n'
        "0\t3\t4\tShares fell on Monday.\tHe agreed with them.\n", encoding="utf-8")
    assert read_sentences(mrpc) == ["He agreed with them.", 'He said "yes" to them.',
                                    "Shares fell on Monday."]  # each once, sorted
    lines = tmp_path / "sentences.txt"
    lines.write_text("One sentence here.\n\n  Another one there.  \nOne sentence here.\n",
                     encoding="utf-8")
    assert read_sentences(lines) == ["Another one there.", "One sentence here."]

    other = tmp_path / "corpus"
    other.mkdir()
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\xfa")
    (tmp_path / "SST-2").mkdir()
    for path, message in [(other, "must be named after its GLUE task"),
                          (tmp_path / "SST-2", "no train.tsv"),
                          (tmp_path / "missing.txt", "no such file or directory"),
                          (empty, "no sentences"), (binary, "not UTF-8 text")]:
        with pytest.raises(DataError, match=message) as info:
            read_sentences(path)
        assert "\n" not in str(info.value)


def test_acceptable_sentences_are_the_class_1_texts_in_order() -> None:
    split = Split((("Good one.",), ("Bad bad.",), ("Also good.",)), np.array([1, 0, 1]), "t")
    assert acceptable_sentences(split) == ["Good one.", "Also good."]
