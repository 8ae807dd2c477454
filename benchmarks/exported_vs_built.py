"""Do exported models run as fast as the latency backend's builds of the same architecture?

The latency model is fitted to models that the latency backend builds: the compression
engine applied to a randomly initialised copy of the base model (``CompressFactory``), which
is also what ``autoprune verify`` times. An export times the trained model it wrote and loaded
back, next to the fine-tuned dense teacher. If those ran at different speeds, neither the
predictions nor a verification could hold for exports. This times every export of the
end-to-end benchmark's store (``$AUTOPRUNE_HOME/benchmarks/end_to_end/*/steps-*/*``) beside
its architecture as the backend builds it, the teacher beside the backend's dense model, all
in interleaved rounds relative to that dense model, ``--passes`` times (latency: run it on a
quiet machine).

Writes ``benchmarks/results/exported_vs_built.json``: per export, its architecture, the ratio
to dense its export recorded, and each pass's ratio for the exported model and for the build;
``exported_over_built`` (per pass, the exported model's ratio over the build's) summarised by
its median and range.

    python benchmarks/exported_vs_built.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import BertForSequenceClassification

import autoprune
from autoprune.latency import DEFAULT_PROTOCOL, measure
from autoprune.latency.factory import CompressFactory
from autoprune.runner.prepare import autoprune_home
from autoprune.space import Architecture

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "exported_vs_built.json"
EXPORTS = autoprune_home() / "benchmarks" / "end_to_end"
TEACHERS = autoprune_home() / "cache" / "teachers"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    exports = sorted(p.parent for p in EXPORTS.glob("*/steps-*/*/report.json"))
    if not exports:
        raise SystemExit(f"no exports under {EXPORTS}: run benchmarks/end_to_end.py first")
    teachers = sorted(TEACHERS.glob("*/config.json"))
    factory = CompressFactory("minilm-l6")
    ids = torch.randint(1, factory.shape.vocab_size, (1, 128), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    models: dict[str, Any] = {"dense": factory.build(Architecture.dense(6, 12), "real").eval()}
    if teachers:
        models["teacher"] = BertForSequenceClassification.from_pretrained(teachers[0].parent).eval()
    rows = []
    for directory in exports:
        report = json.loads((directory / "report.json").read_text())
        name = f"{directory.parent.parent.name}/{directory.name}"
        models[f"exported:{name}"] = autoprune.load(directory)
        models[f"built:{name}"] = factory.build(Architecture.from_list(report["architecture"]), "real").eval()
        rows.append({"export": name, "architecture": report["architecture_summary"],
                     "export_ratio": round(1 / report["speedup"], 4), "exported": [], "built": []})
    passes = []
    for index in range(args.passes):
        figures = measure(models, DEFAULT_PROTOCOL, threads=2, inputs=inputs, reference="dense")
        dense = figures["dense"].median_ms
        passes.append({"dense_ms": round(dense, 3), "teacher_over_dense": (
            round(figures["teacher"].median_ms / dense, 4) if "teacher" in figures else None)})
        for row in rows:
            for kind in ("exported", "built"):
                row[kind].append(round(figures[f"{kind}:{row['export']}"].median_ms / dense, 4))
    ratios = [e / b for row in rows for e, b in zip(row["exported"], row["built"])]
    result = {"passes": passes, "exports": rows,
              "exported_over_built": {"median": round(statistics.median(ratios), 4),
                                      "min": round(min(ratios), 4), "max": round(max(ratios), 4),
                                      "n": len(ratios)}}
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
