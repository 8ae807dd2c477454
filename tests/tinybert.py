"""A tiny BERT with its own vocabulary and a sentiment task it learns in a few dozen steps.

Shared by the tests that need a real (but seconds-cheap) teacher, fine-tune or service run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

POSITIVE = ["good", "great", "fine", "lovely"]
NEGATIVE = ["bad", "awful", "poor", "dull"]
FILLER = ["the", "a", "film", "plot", "is", "was", "very", "quite", "and", "story"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]


def sentiment_examples(n: int, seed: int) -> list[tuple[str, int]]:
    """Filler words around one sentiment word, with its label (1 = positive)."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(n):
        label = int(rng.integers(0, 2))
        words = list(rng.choice(FILLER, int(rng.integers(2, 10))))
        words.insert(int(rng.integers(0, len(words) + 1)),
                     str(rng.choice(POSITIVE if label else NEGATIVE)))
        examples.append((" ".join(words), label))
    return examples


def write_sst2_dir(directory: Path, n_train: int = 300, n_dev: int = 60) -> Path:
    """The examples as a GLUE-format SST-2 directory (header, tab, label)."""
    directory.mkdir(parents=True)
    for name, n, seed in (("train.tsv", n_train, 0), ("dev.tsv", n_dev, 1)):
        rows = ["sentence\tlabel"] + [f"{text} \t{label}" for text, label in sentiment_examples(n, seed)]
        (directory / name).write_text("\n".join(rows) + "\n")
    return directory


def write_model(directory: Path, num_labels: int = 2, num_layers: int = 2) -> Path:
    """A randomly initialised hidden-32, 4-head BERT and its tokenizer, saved like a checkpoint."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=num_layers,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                        num_labels=num_labels, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    BertForSequenceClassification(config).save_pretrained(directory)
    BertTokenizer(vocab={t: i for i, t in enumerate(VOCAB)}).save_pretrained(directory)
    return directory
