"""Readers: GLUE-format TSV directories, Hugging Face ``datasets``, user CSV/JSONL files.

Each reader returns :class:`~autoprune.data.dataset.Split` objects and raises
:class:`~autoprune.errors.DataError` (exit 2, one line naming the file and field) on bad input.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoprune.data.dataset import Split
from autoprune.data.tasks import Column, Task
from autoprune.errors import DataError


# ---- GLUE TSV --------------------------------------------------------------------------
def read_tsv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of every non-empty line, split on tabs.

    No CSV quoting: GLUE fields contain bare ``"`` characters (MRPC, SST-2) that a quoting
    reader would treat as the start of a quoted field. ``utf-8-sig`` drops MRPC's BOM.
    """
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    rows = []
    # split("\n") rather than splitlines(): the latter also breaks on \x1c, \u2028 and
    # friends, which occur inside real sentences.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            rows.append((number, line.split("\t")))
    return rows


def _column_index(header: list[str] | None, column: Column, path: Path) -> int:
    if isinstance(column, int):
        return column
    assert header is not None
    if column not in header:
        raise DataError(f"{path}: no column {column!r} in the header")
    # MNLI's train file has several label columns; ``gold_label`` is unique, and for any
    # duplicated name the last one is the aggregate GLUE uses.
    return len(header) - 1 - header[::-1].index(column)


def read_glue_split(task: Task, path: Path) -> Split:
    """One GLUE-format TSV file of ``task``."""
    layout = task.glue
    if layout is None:
        raise DataError(f"task {task.name!r} has no GLUE file layout")
    rows = read_tsv_rows(path)
    header = None
    if layout.header and rows:
        header = [field.strip() for field in rows[0][1]]
        rows = rows[1:]
    text_index = [_column_index(header, c, path) for c in layout.text_columns]
    label_index = _column_index(header, layout.label_column, path)
    needed = max(*text_index, label_index) + 1
    label_name = str(layout.label_column) if header is None else layout.label_column
    texts: list[tuple[str, ...]] = []
    labels: list[Any] = []
    for number, fields in rows:
        if len(fields) < needed:
            raise DataError(f"{path}:{number}: {len(fields)} fields, task {task.name!r} "
                            f"needs {needed}")
        texts.append(tuple(fields[i].strip() for i in text_index))
        labels.append(_parse_label(task, fields[label_index].strip(),
                                   f"{path}:{number} field {label_name!r}"))
    return Split(tuple(texts), _label_array(task, labels), str(path))


def read_glue_dir(task: Task, directory: Path) -> tuple[Split, Split]:
    """``(train, dev)`` from a GLUE-format task directory."""
    layout = task.glue
    if layout is None:
        raise DataError(f"task {task.name!r} is not a GLUE task; give train_file/dev_file")
    if not directory.is_dir():
        raise DataError(f"{directory}: no such task directory")
    missing = [name for name in (layout.train_file, layout.dev_file)
               if not (directory / name).is_file()]
    if missing:
        raise DataError(f"{directory}: missing {missing[0]} for task {task.name!r}")
    return (read_glue_split(task, directory / layout.train_file),
            read_glue_split(task, directory / layout.dev_file))


def _parse_label(task: Task, value: str, where: str) -> Any:
    if task.is_regression:
        try:
            return float(value)
        except ValueError:
            raise DataError(f"{where}: {value!r} is not a number "
                            f"(task {task.name!r} is a regression)") from None
    return task.label_index(value, where)


def _label_array(task: Task, labels: Sequence[Any]) -> np.ndarray:
    return np.asarray(labels, dtype=np.float32 if task.is_regression else np.int64)


# ---- Hugging Face datasets -------------------------------------------------------------
def read_hf_dataset(task: Task, name: str, text_fields: Sequence[str] | None = None,
                    label_field: str | None = None) -> tuple[Split, Split]:
    """``(train, dev)`` from the Hub: ``glue/sst2`` means ``load_dataset("glue", "sst2")``.

    Only called when a spec asks for it; a hub that cannot be reached (offline machine,
    ``HF_DATASETS_OFFLINE=1``) is a DataError, never a silent fallback.
    """
    import datasets  # imported here: it is slow to import and most jobs read files

    path, _, config = name.rpartition("/")
    if not path:
        path, config = name, ""
    layout = task.glue
    fields = tuple(text_fields) if text_fields else (layout.hf_text_columns if layout else ())
    label = label_field or "label"
    dev_split = layout.hf_dev_split if layout else "validation"
    if not fields:
        raise DataError(f"hf_dataset {name!r}: give task.text_fields")
    try:
        loaded = datasets.load_dataset(path, config or None)
    except Exception as exc:  # datasets raises many unrelated types for "cannot reach"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"hf_dataset {name!r}: cannot load ({reason[:200]})") from None
    splits = []
    for split_name in ("train", dev_split):
        if split_name not in loaded:
            raise DataError(f"hf_dataset {name!r}: no split {split_name!r}")
        part = loaded[split_name]
        for field in (*fields, label):
            if field not in part.column_names:
                raise DataError(f"hf_dataset {name!r}: no field {field!r} in split {split_name!r}")
        where = f"hf_dataset {name!r} split {split_name!r} field {label!r}"
        texts = tuple(zip(*(map(str, part[f]) for f in fields)))
        raw = part[label]
        if task.is_regression:
            labels = [float(v) for v in raw]
        else:
            assert task.labels is not None
            labels = [_hf_class(task, v, where) for v in raw]
        splits.append(Split(texts, _label_array(task, labels), f"hf:{name}/{split_name}"))
    return splits[0], splits[1]


def _hf_class(task: Task, value: Any, where: str) -> int:
    assert task.labels is not None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= int(value) < len(task.labels):
            return int(value)
        raise DataError(f"{where}: label {value!r} outside 0..{len(task.labels) - 1}")
    return task.label_index(str(value), where)


# ---- user CSV / JSONL ------------------------------------------------------------------
def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, record)`` pairs of a ``.csv``, ``.tsv``, ``.jsonl`` or ``.json`` lines file."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json", ".ndjson"):
            yield from _read_jsonl(path)
        elif suffix in (".csv", ".tsv"):
            # A user's CSV is real CSV (quoted fields may hold commas and newlines); TSV
            # follows GLUE's convention of no quoting.
            quoting = csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",",
                                        quoting=quoting)
                for record in reader:
                    yield reader.line_num, record
        else:
            raise DataError(f"{path}: unknown format {suffix!r} (use .csv, .tsv or .jsonl)")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not valid CSV ({exc})") from None


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object per line")
            yield number, record


def read_user_file(path: Path, text_fields: Sequence[str], label_field: str
                   ) -> tuple[tuple[tuple[str, ...], ...], list[Any], list[str]]:
    """Texts, raw label values and a location for each record of a user file."""
    texts: list[tuple[str, ...]] = []
    labels: list[Any] = []
    where: list[str] = []
    for number, record in read_records(path):
        for field in (*text_fields, label_field):
            if record.get(field) is None:
                raise DataError(f"{path}:{number}: no field {field!r}")
        texts.append(tuple(str(record[f]) for f in text_fields))
        labels.append(record[label_field])
        where.append(f"{path}:{number} field {label_field!r}")
    return tuple(texts), labels, where


def label_text(value: Any) -> str:
    """One spelling per label value: JSON ``1``, CSV ``"1"`` and ``1.0`` are the same class."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
