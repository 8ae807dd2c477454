"""Synthetic acceptability data: grammatical sentences against copies broken by one edit.

all-MiniLM-L6-v2 was trained to give a sentence and its paraphrase one embedding, which
rewards ignoring word order and inflection: exactly what CoLA asks about. A teacher that
first learns to tell grammatical sentences from copies with two words swapped, a word
deleted, moved or inserted, or an agreement word flipped (is/are, this/these, he/him) starts
its CoLA fine-tune from a model that looks at syntax again. Measured on CoLA (MiniLM,
2026-12-06, AMD EPYC Zen 3), 1,000 steps on CoLA's acceptable sentences and MRPC's news
sentences: that stage alone scores dev Matthews 0.20-0.26 before the model has seen a CoLA
label; the teacher after it ends at 0.381, 0.329 and 0.329 at seeds 0-2 (``prepare_teacher``;
0.339, 0.295, 0.267 without the stage) and at 0.360, 0.382, 0.373 in
``benchmarks/cola_teacher.py``'s own loop.

The edits keep surface cues out that say nothing about grammar: trailing punctuation stays at
the end and capitals follow the new word order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from autoprune.data.dataset import Split
from autoprune.errors import DataError

# One flip makes a sentence ungrammatical more often than not (agreement, case, count).
FLIPS = {"is": "are", "are": "is", "was": "were", "were": "was", "has": "have",
         "have": "has", "does": "do", "do": "does", "a": "an", "an": "a", "this": "these",
         "these": "this", "that": "those", "those": "that", "he": "him", "him": "he",
         "she": "her", "her": "she", "they": "them", "them": "they", "we": "us", "us": "we",
         "i": "me", "me": "I", "himself": "themselves", "themselves": "himself",
         "herself": "him", "who": "whom", "whom": "who", "much": "many", "many": "much"}
EDITS = ("swap", "delete", "move", "insert", "flip")
_ENDINGS = ".?!"


def break_sentence(sentence: str, rng: np.random.Generator, vocabulary: Sequence[str],
                   lowercase: set[str] | frozenset[str] = frozenset()) -> str | None:
    """``sentence`` with one random edit, or ``None`` when none applies or it changed nothing.

    ``vocabulary``: the words an insertion draws from (as often as they occur, so mostly
    function words, as in real over-generation errors, not rare nouns a model would spot by
    their rarity). ``lowercase``: words seen in lowercase, so a common word moved away from
    the front loses its capital (a proper noun keeps it).
    """
    body = sentence.rstrip(_ENDINGS)
    end = sentence[len(body):]
    words = body.split()
    if len(words) < 3:
        return None
    first = words[0]
    edit = rng.choice(EDITS)
    if edit == "swap":
        i = int(rng.integers(len(words) - 1))
        words[i], words[i + 1] = words[i + 1], words[i]
    elif edit == "delete":
        del words[int(rng.integers(len(words)))]
    elif edit == "move":
        word = words.pop(int(rng.integers(len(words))))
        words.insert(int(rng.integers(len(words) + 1)), word)
    elif edit == "insert":
        if not vocabulary:
            return None
        words.insert(int(rng.integers(len(words) + 1)),
                     vocabulary[int(rng.integers(len(vocabulary)))])
    else:
        flippable = [i for i, w in enumerate(words) if w.lower() in FLIPS]
        if not flippable:
            return None
        i = int(rng.choice(flippable))
        flipped = FLIPS[words[i].lower()]
        words[i] = flipped.capitalize() if words[i][:1].isupper() else flipped
    if first[:1].isupper():
        for i in range(1, len(words)):
            if words[i] is first and first != "I" and first.lower() in lowercase:
                words[i] = first.lower()
        words[0] = words[0][:1].upper() + words[0][1:]
    broken = " ".join(words) + end
    return None if broken == sentence else broken


def acceptable_sentences(split: Split) -> list[str]:
    """The class-1 ("acceptable") sentences of a single-sentence binary split, in its order."""
    return [texts[0] for texts, label in zip(split.texts, split.labels, strict=True) if label == 1]


def synthetic_acceptability(sentences: Iterable[str], seed: int, attempts: int = 5) -> Split:
    """Each sentence (label 1) beside one broken copy of it (label 0), shuffled (seeded).

    A sentence that no edit breaks within ``attempts`` draws (fewer than three words) is left
    out with its pair, so the classes stay balanced. Repeated sentences stay repeated, as a
    task's training set repeats them.
    """
    kept = [s.strip() for s in sentences if s.strip()]
    vocabulary = [w for s in kept for w in s.rstrip(_ENDINGS).split()[1:]]
    lowercase = {w for w in vocabulary if w.islower()}
    rng = np.random.default_rng(seed)
    texts: list[tuple[str, ...]] = []
    labels: list[int] = []
    for sentence in kept:
        for _ in range(attempts):
            broken = break_sentence(sentence, rng, vocabulary, lowercase)
            if broken is not None:
                texts += [(sentence,), (broken,)]
                labels += [1, 0]
                break
    if not texts:
        raise DataError("synthetic acceptability: no sentence of three words or more to "
                        "break")
    order = rng.permutation(len(texts))
    return Split(tuple(texts[i] for i in order), np.asarray(labels, dtype=np.int64)[order],
                 "synthetic acceptability")


def read_sentences(path: Path) -> list[str]:
    """Grammatical sentences from ``path``, each once, sorted: a GLUE-format directory named
    after its task (every text field of its ``train.tsv``, e.g. MRPC's news sentences) or a
    text file with one sentence per line."""
    from autoprune.data.readers import read_glue_split
    from autoprune.data.tasks import glue_task

    if path.is_dir():
        task = glue_task(path.name)
        if task is None or task.glue is None:
            raise DataError(f"{path}: a directory of sentences must be named after its GLUE "
                            "task (e.g. MRPC) and hold its train.tsv")
        train = path / task.glue.train_file
        if not train.is_file():
            raise DataError(f"{path}: no {task.glue.train_file}")
        split = read_glue_split(task, train)
        return sorted({text for texts in split.texts for text in texts})
    if not path.is_file():
        raise DataError(f"{path}: no such file or directory")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None
    sentences = sorted({line.strip() for line in lines if line.strip()})
    if not sentences:
        raise DataError(f"{path}: no sentences")
    return sentences
