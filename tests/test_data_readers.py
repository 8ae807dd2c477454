"""Readers on every format: GLUE TSV (tiny fixtures + the shared files), user CSV/JSONL, HF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autoprune.data import GLUE_TASKS, glue_task, load_task
from autoprune.errors import DataError, UserInputError
from autoprune.spec import TaskSpec

# One tiny train/dev pair per GLUE task, in that task's real column layout.
GLUE_FIXTURES: dict[str, tuple[str, dict[str, str]]] = {
    "cola": ("CoLA", {
        "train.tsv": "gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tRode sailors the \"breeze.\n",
        "dev.tsv": "cj99\t1\t\tShe left.",  # no header, no trailing newline
    }),
    "sst2": ("SST-2", {
        "train.tsv": "sentence\tlabel\nit 's \"charming\" . \t1\nbleak \t0\n",
        "dev.tsv": "sentence\tlabel\na fine film \t1\n",
    }),
    "mrpc": ("MRPC", {
        "train.tsv": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                     "1\t1\t2\tHe said \"yes\".\t\"Yes,\" he said.\n0\t3\t4\tA cat.\tA dog.\n",
        "dev.tsv": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t5\t6\tHi.\tHello.\n",
    }),
    "qqp": ("QQP", {
        "train.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                     "1\t1\t2\tHow?\tHow so?\t1\n2\t3\t4\tWhy?\tWhen?\t0\n",
        "dev.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n3\t5\t6\tA?\tB?\t0\n",
    }),
    "stsb": ("STS-B", {
        "train.tsv": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                     "0\tmain\tf\t2012\t1\tnone\tnone\tA plane takes off.\tAn air plane is taking off.\t5.000\n"
                     "1\tmain\tf\t2012\t4\tnone\tnone\tA man plays.\tA woman cooks.\t0.500\n",
        "dev.tsv": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                   "0\tmain\tf\t2012\t1\tnone\tnone\tA.\tB.\t2.5\n",
    }),
    "mnli": ("MNLI", {
        "train.tsv": "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                     "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
                     "0\t1\t1n\tgov\t( x )\t( y )\t(ROOT x)\t(ROOT y)\tP one.\tH one.\tneutral\tneutral\n"
                     "1\t2\t2e\tgov\t( x )\t( y )\t(ROOT x)\t(ROOT y)\tP two.\tH two.\tentailment\tentailment\n",
        "dev_matched.tsv": "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                           "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\t"
                           "label3\tlabel4\tlabel5\tgold_label\n"
                           "0\t1\t1c\tgov\tx\ty\tx\ty\tMatched P.\tMatched H.\tcontradiction\tneutral\t"
                           "contradiction\tcontradiction\tcontradiction\tcontradiction\n",
        "dev_mismatched.tsv": "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                              "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\t"
                              "label3\tlabel4\tlabel5\tgold_label\n"
                              "0\t1\t1n\tletters\tx\ty\tx\ty\tOther P.\tOther H.\tneutral\tneutral\t"
                              "neutral\tneutral\tneutral\tneutral\n",
    }),
    "qnli": ("QNLI", {
        "train.tsv": "index\tquestion\tsentence\tlabel\n0\tWho?\tHim.\tentailment\n1\tWhat?\tNo.\tnot_entailment\n",
        "dev.tsv": "index\tquestion\tsentence\tlabel\n0\tWhere?\tHere.\tentailment\n",
    }),
    "rte": ("RTE", {
        "train.tsv": "index\tsentence1\tsentence2\tlabel\n0\tA b.\tA.\tentailment\n1\tC.\tD.\tnot_entailment\n",
        "dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\tE.\tF.\tnot_entailment\n",
    }),
    "wnli": ("WNLI", {
        "train.tsv": "index\tsentence1\tsentence2\tlabel\n0\tI saw it.\tIt was seen.\t1\n1\tX.\tY.\t0\n",
        "dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\tZ.\tW.\t0\n",
    }),
}


def write_glue(root: Path, task: str) -> Path:
    folder, files = GLUE_FIXTURES[task]
    directory = root / folder
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


@pytest.mark.parametrize("name", sorted(GLUE_FIXTURES))
def test_every_glue_layout_reads(tmp_path: Path, name: str) -> None:
    directory = write_glue(tmp_path, name)
    data = load_task(TaskSpec(name=name, data_dir=directory))
    assert (len(data.train), len(data.dev)) == (2, 1)
    task = GLUE_TASKS[name]
    assert data.task is task
    text_count = len(task.glue.text_columns)  # type: ignore[union-attr]
    assert all(len(t) == text_count and all(t) for t in data.train.texts)
    if task.is_regression:
        assert data.train.labels.dtype == np.float32
        np.testing.assert_allclose(data.train.labels, [5.0, 0.5])
    else:
        assert data.train.labels.dtype == np.int64
        assert set(data.train.labels.tolist()) <= set(range(task.num_labels))


def test_quotes_and_bom_are_plain_text(tmp_path: Path) -> None:
    data = load_task(TaskSpec(name="mrpc", data_dir=write_glue(tmp_path, "mrpc")))
    assert data.train.texts[0] == ('He said "yes".', '"Yes," he said.')
    assert data.train.labels.tolist() == [1, 0]
    cola = load_task(TaskSpec(name="CoLA", data_dir=write_glue(tmp_path, "cola")))
    assert cola.train.texts[1] == ('Rode sailors the "breeze.',)
    assert cola.dev.texts == (("She left.",),)


def test_mnli_matched_and_mismatched(tmp_path: Path) -> None:
    directory = write_glue(tmp_path, "mnli")
    matched = load_task(TaskSpec(name="mnli", data_dir=directory))
    mismatched = load_task(TaskSpec(name="mnli-mm", data_dir=directory))
    labels = GLUE_TASKS["mnli"].labels
    assert matched.dev.texts == (("Matched P.", "Matched H."),)
    assert labels[int(matched.dev.labels[0])] == "contradiction"  # gold_label, not label1
    assert mismatched.dev.texts == (("Other P.", "Other H."),)
    assert [labels[i] for i in matched.train.labels] == ["neutral", "entailment"]


def test_aliases_and_main_metrics() -> None:
    assert glue_task("SST-2") is GLUE_TASKS["sst2"]
    assert glue_task("STS-B") is GLUE_TASKS["stsb"]
    assert glue_task("nope") is None
    assert GLUE_TASKS["mrpc"].main_metric == "f1" and "accuracy" in GLUE_TASKS["mrpc"].metrics
    assert GLUE_TASKS["cola"].main_metric == "matthews"
    assert GLUE_TASKS["stsb"].main_metric == "spearman" and GLUE_TASKS["stsb"].num_labels == 1


def test_shared_glue_row_counts(glue_dir: Path) -> None:
    expected = {"sst2": ("SST-2", 67349, 872), "cola": ("CoLA", 8551, 1043),
                "mrpc": ("MRPC", 3668, 408)}
    for name, (folder, train, dev) in expected.items():
        data = load_task(TaskSpec(name=name, data_dir=glue_dir / folder))
        assert (len(data.train), len(data.dev)) == (train, dev)
    sst2 = load_task(TaskSpec(name="sst2", data_dir=glue_dir / "SST-2"))
    assert np.bincount(sst2.dev.labels).tolist() == [428, 444]


def test_max_samples_is_a_seeded_subset(tmp_path: Path) -> None:
    directory = tmp_path / "SST-2"
    directory.mkdir()
    rows = "".join(f"sentence number {i}\t{i % 2}\n" for i in range(100))
    (directory / "train.tsv").write_text("sentence\tlabel\n" + rows)
    (directory / "dev.tsv").write_text("sentence\tlabel\n" + rows)
    spec = TaskSpec(name="sst2", data_dir=directory, max_train_samples=10, max_eval_samples=5)
    first, again = load_task(spec, seed=1), load_task(spec, seed=1)
    other = load_task(spec, seed=2)
    assert (len(first.train), len(first.dev)) == (10, 5)
    assert first.train.texts == again.train.texts
    assert first.train.texts != other.train.texts
    assert first.train.texts != tuple((f"sentence number {i}",) for i in range(10))


# ---- user files --------------------------------------------------------------------------
def test_user_csv_with_quoted_fields(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text('id,text,hypothesis,gold\n1,"Hello, world",Hi,yes\n2,"Say ""no""",No,no\n'
                     '3,Plain,Other,yes\n')
    dev = tmp_path / "dev.csv"
    dev.write_text("id,text,hypothesis,gold\n4,x,y,no\n")
    data = load_task(TaskSpec(name="mine", train_file=train, dev_file=dev,
                              text_fields=("text", "hypothesis"), label_field="gold"))
    assert data.task.labels == ("no", "yes") and data.task.main_metric == "accuracy"
    assert data.train.texts[0] == ("Hello, world", "Hi")
    assert data.train.texts[1] == ('Say "no"', "No")
    assert data.train.labels.tolist() == [1, 0, 1] and data.dev.labels.tolist() == [0]


def test_user_jsonl_integer_labels_and_regression(tmp_path: Path) -> None:
    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train.write_text("\n".join(json.dumps({"t": f"s{i}", "y": i % 3}) for i in range(6)) + "\n")
    dev.write_text(json.dumps({"t": "d", "y": 2}) + "\n\n")
    data = load_task(TaskSpec(name="three", train_file=train, dev_file=dev, text_fields=("t",),
                              label_field="y", num_labels=3))
    assert data.task.labels == ("0", "1", "2")
    assert data.train.labels.tolist() == [0, 1, 2, 0, 1, 2] and data.dev.labels.tolist() == [2]
    reg = load_task(TaskSpec(name="score", train_file=train, dev_file=dev, text_fields=("t",),
                             label_field="y", num_labels=1, metric="pearson"))
    assert reg.task.is_regression and reg.task.main_metric == "pearson"
    assert reg.train.labels.dtype == np.float32


# ---- bad input: one-line DataErrors naming the file and field ---------------------------
def test_missing_task_file(tmp_path: Path) -> None:
    directory = write_glue(tmp_path, "sst2")
    (directory / "dev.tsv").unlink()
    with pytest.raises(DataError, match=r"missing dev\.tsv") as info:
        load_task(TaskSpec(name="sst2", data_dir=directory))
    assert isinstance(info.value, UserInputError) and "\n" not in str(info.value)


def test_label_outside_label_set(tmp_path: Path) -> None:
    directory = write_glue(tmp_path, "sst2")
    (directory / "train.tsv").write_text("sentence\tlabel\ngood\t1\nodd\t7\n")
    with pytest.raises(DataError, match=r"train\.tsv:3 field 'label': label '7' not in"):
        load_task(TaskSpec(name="sst2", data_dir=directory))
    rte = write_glue(tmp_path, "rte")
    (rte / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tmaybe\n")
    with pytest.raises(DataError, match=r"dev\.tsv:2 field 'label'"):
        load_task(TaskSpec(name="rte", data_dir=rte))


def test_user_label_outside_declared_range(tmp_path: Path) -> None:
    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train.write_text('{"t": "a", "y": 0}\n{"t": "b", "y": 1}\n')
    dev.write_text('{"t": "c", "y": 5}\n')
    with pytest.raises(DataError, match=r"dev\.jsonl:1 field 'y': label '5' not in"):
        load_task(TaskSpec(name="x", train_file=train, dev_file=dev, text_fields=("t",),
                           label_field="y", num_labels=2))
    with pytest.raises(DataError, match=r"no field 'missing'"):
        load_task(TaskSpec(name="x", train_file=train, dev_file=dev, text_fields=("missing",),
                           label_field="y"))


def test_empty_dataset(tmp_path: Path) -> None:
    directory = write_glue(tmp_path, "sst2")
    (directory / "dev.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(DataError, match="dev split of task 'sst2' is empty"):
        load_task(TaskSpec(name="sst2", data_dir=directory))
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    with pytest.raises(DataError, match="no records"):
        load_task(TaskSpec(name="x", train_file=empty, dev_file=empty, text_fields=("text",),
                           label_field="label"))


def test_unknown_task_for_a_glue_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a GLUE task"):
        load_task(TaskSpec(name="sentiment", data_dir=write_glue(tmp_path, "sst2")))


def test_hf_dataset_unreachable_is_a_data_error(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    import datasets

    # Offline, with empty caches: whatever this machine has cached must not answer.
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    with pytest.raises(DataError, match=r"hf_dataset 'glue/sst2': cannot load") as info:
        load_task(TaskSpec(name="sst2", hf_dataset="glue/sst2"))
    assert "\n" not in str(info.value)


def test_hf_dataset_columns_and_class_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub reader's mapping, on an in-memory DatasetDict shaped like ``glue/mnli``."""
    import datasets

    def fake_load(path: str, name: str | None = None) -> datasets.DatasetDict:
        assert (path, name) == ("glue", "mnli")
        part = {"premise": ["P1", "P2"], "hypothesis": ["H1", "H2"], "label": [2, 0], "idx": [0, 1]}
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict(part),
                                     "validation_matched": datasets.Dataset.from_dict(part)})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    data = load_task(TaskSpec(name="mnli", hf_dataset="glue/mnli"))
    assert data.train.texts == (("P1", "H1"), ("P2", "H2"))
    assert [GLUE_TASKS["mnli"].labels[i] for i in data.dev.labels] == ["contradiction", "entailment"]
