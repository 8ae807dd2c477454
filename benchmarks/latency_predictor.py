"""Latency predictor benchmark: profile MiniLM on this CPU, validate on held-out architectures.

For each batch size (1 and 8; sequence length 128) it profiles the packaged MiniLM with the
torch backend - operator tables plus at most ``--n-fit`` (100) end-to-end measurements, within
``--budget-s`` seconds of profiling *per batch size* (300 s, so 10 minutes for both) - writes
``latency_models/this-cpu-torch-b{B}-s{L}.json``, then measures ``--n-heldout`` (50) fresh
random architectures of ``bert-full.yaml`` twice and compares them with the predictions. It also
checks that sparsity-only candidates are predicted (and measured) within 5% of dense, and
reports (no target) how the model does on architectures that are int8 in every layer, a region
random samples almost never visit but the 0.3x end-to-end searches go to (``int8``).
``--checks-only`` runs just those two checks against the committed latency models.

Prints JSON and writes ``benchmarks/results/latency_predictor.json``: one entry per batch size
with ``within_10pct``, ``kendall_tau``, ``mape``, ``flops_baseline_mape``,
``repeatability_within_10pct``, ``n_heldout``, ``profile_seconds``, ``n_fit_measurements``, and a
top-level summary (the worst batch size for each figure). Validation figures compare latencies
on the profile's scale (each pass measured relative to the dense model in every round, the dense
model mapped to the profiled ``dense_ms``); ``dense_drift`` and ``absolute_mape`` show how far the
machine as a whole moved between profiling and validation. A full run takes about 15-20 minutes
on an idle 2-core machine; ``--quick`` is a 2-3 minute smoke run whose numbers mean nothing (it
writes ``latency_predictor.quick.json`` and leaves ``latency_models/`` alone).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from autoprune.latency import (
    QUICK,
    CompressFactory,
    LatencyModel,
    Protocol,
    RichProgress,
    profile,
    validate,
)
from autoprune.latency.backends import TorchBackend
from autoprune.latency.protocol import measure
from autoprune.space import Architecture, LayerConfig, SearchSpace

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"within_10pct": 0.90, "kendall_tau": 0.90, "repeatability_within_10pct": 0.95}


def model_file(directory: Path, batch: int, seq_len: int) -> Path:
    return directory / f"this-cpu-torch-b{batch}-s{seq_len}.json"


def ratios_to_dense(model: LatencyModel, factory: CompressFactory, protocol: Protocol,
                    archs: dict[str, Architecture]) -> dict[str, tuple[float, float]]:
    """``name -> (predicted, measured)`` latency as a ratio to the dense model, which runs in
    every measuring round (the protocol's reference)."""
    shape = factory.shape
    dense = Architecture.dense(shape.num_layers, shape.num_heads)
    backend = TorchBackend(factory, model.batch, model.seq_len, model.threads)
    runners = {"dense": backend.model(dense), **{n: backend.model(a) for n, a in archs.items()}}
    figures = measure(runners, protocol, threads=model.threads, reference="dense")
    dense_pred, dense_ms = model.predict(dense), figures["dense"].median_ms
    return {n: (model.predict(a) / dense_pred, figures[n].median_ms / dense_ms)
            for n, a in archs.items()}


def sparsity_check(model: LatencyModel, factory: CompressFactory, protocol: Protocol) -> dict[str, Any]:
    """Sparsity-only variants: predicted and measured ratios to dense."""
    shape = factory.shape
    variants = {
        "unstructured-0.5": Architecture.uniform(shape.num_layers, LayerConfig(
            heads=shape.num_heads, pattern="unstructured", sparsity=0.5)),
        "unstructured-0.9": Architecture.uniform(shape.num_layers, LayerConfig(
            heads=shape.num_heads, pattern="unstructured", sparsity=0.9)),
        "2:4": Architecture.uniform(shape.num_layers, LayerConfig(heads=shape.num_heads, pattern="2:4")),
    }
    ratios = ratios_to_dense(model, factory, protocol, variants)
    predicted = {n: round(p, 4) for n, (p, _) in ratios.items()}
    return {
        "predicted_ratio_to_dense": predicted,
        "measured_ratio_to_dense": {n: round(m, 4) for n, (_, m) in ratios.items()},
        "predicted_within_5pct_of_dense": all(abs(r - 1) <= 0.05 for r in predicted.values()),
    }


# Models in which every kept layer is int8: the region the 0.3x end-to-end searches went to
# on a CPU where int8 is fast. Random samples of bert-full (what the held-out validation
# draws) mix bit-widths across layers and almost never land here.
INT8_ARCHITECTURES = [
    " ".join(["h12/f1/b8"] * 6),
    " ".join(["h12/f1/b8"] * 5 + ["-"]),
    "h8/f0.9/b8 h10/f0.6/b8 h10/f0.6/b8 h8/f0.9/b8 h10/f0.6/b8 h8/f0.6/b8",
    " ".join(["h10/f0.6/b8"] * 6),
    " ".join(["h8/f0.9/b8"] * 6),
    " ".join(["h6/f0.5/b8"] * 6),
    " ".join(["h4/f0.4/b8"] * 4 + ["-", "-"]),
]


def int8_check(model: LatencyModel, factory: CompressFactory, protocol: Protocol) -> dict[str, Any]:
    """All-int8 architectures: predicted and measured ratios to dense."""
    archs = {text: Architecture.from_summary(text) for text in INT8_ARCHITECTURES}
    rows = [{"architecture": text, "predicted_ratio_to_dense": round(predicted, 4),
             "measured_ratio_to_dense": round(measured, 4),
             "error": round(predicted / measured - 1, 4)}
            for text, (predicted, measured) in ratios_to_dense(model, factory, protocol, archs).items()]
    errors = [abs(row["error"]) for row in rows]
    return {"architectures": rows, "mape": round(sum(errors) / len(errors), 4),
            "within_10pct": round(sum(e <= 0.10 for e in errors) / len(errors), 4)}


def checks_only(args: argparse.Namespace, factory: CompressFactory, protocol: Protocol) -> dict[str, Any]:
    """The sparsity and all-int8 checks against the committed latency models (no profiling),
    merged into the committed results."""
    target = REPO / "benchmarks" / "results" / "latency_predictor.json"
    result = json.loads(target.read_text())
    for batch in args.batches:
        model = LatencyModel.load(model_file(REPO / "latency_models", batch, args.seq_len), strict=True)
        entry = result.setdefault(f"batch_{batch}", {})
        entry["sparsity"] = sparsity_check(model, factory, protocol)
        entry["int8"] = int8_check(model, factory, protocol)
        print(f"batch {batch}: int8 {json.dumps(entry['int8'])}", file=sys.stderr)
    target.write_text(json.dumps(result, indent=2) + "\n")
    return result


def run_batch(args: argparse.Namespace, factory: CompressFactory, space: SearchSpace, batch: int,
              out_dir: Path, protocol: Protocol) -> dict[str, Any]:
    path = model_file(out_dir, batch, args.seq_len)
    with RichProgress(transient=True) as bar:
        model = profile(args.model, "torch", batch, args.seq_len, args.threads, path, space=space,
                        n_fit=args.n_fit, time_budget_s=args.budget_s, protocol=protocol,
                        factory=factory, seed=args.seed, progress=bar)
    with RichProgress(transient=True) as bar:
        record = validate(model, n=args.n_heldout, space=space, protocol=protocol, factory=factory,
                          seed=args.seed + 1000, save=True, progress=bar)
    sparsity = sparsity_check(model, factory, protocol)
    int8 = int8_check(model, factory, protocol)
    result = {
        "within_10pct": record.within_10pct,
        "kendall_tau": record.kendall_tau,
        "mape": record.mape,
        "flops_baseline_mape": record.flops_baseline_mape,
        "repeatability_within_10pct": record.repeatability_within_10pct,
        "n_heldout": record.n_heldout,
        "profile_seconds": model.document.profile_seconds,
        "n_fit_measurements": len(model.document.end_to_end),
        "selected": model.selected,
        "table_mape": record.table_mape,
        "cv_mape": {name: fit.cv_mape for name, fit in model.document.fits.items()},
        "dense_ms": round(model.dense_ms, 3),
        "validate_seconds": record.seconds,
        "dense_drift": record.dense_drift,
        "absolute_within_10pct": record.absolute_within_10pct,
        "absolute_mape": record.absolute_mape,
        "sparsity": sparsity,
        "int8": int8,
        "conditions": {"profile": model.document.conditions, "validate": record.conditions},
        "latency_model": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
    }
    result["targets_met"] = {
        **{key: result[key] >= floor for key, floor in TARGETS.items()},
        "mape_vs_flops": result["mape"] <= result["flops_baseline_mape"],
        "n_heldout": result["n_heldout"] >= 50,
        "n_fit_measurements": result["n_fit_measurements"] <= 100,
        "sparsity_within_5pct": sparsity["predicted_within_5pct_of_dense"],
    }
    print(f"batch {batch}: {json.dumps({k: result[k] for k in list(TARGETS) + ['mape', 'flops_baseline_mape']})}",
          file=sys.stderr)
    return result


def summary(per_batch: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows = list(per_batch.values())
    return {
        "within_10pct": min(r["within_10pct"] for r in rows),
        "kendall_tau": min(r["kendall_tau"] for r in rows),
        "mape": max(r["mape"] for r in rows),
        "flops_baseline_mape": max(r["flops_baseline_mape"] for r in rows),
        "mape_ratio_to_flops": max(r["mape"] / r["flops_baseline_mape"] for r in rows if r["flops_baseline_mape"]),
        "repeatability_within_10pct": min(r["repeatability_within_10pct"] for r in rows),
        "n_heldout": min(r["n_heldout"] for r in rows),
        "profile_seconds": round(sum(r["profile_seconds"] for r in rows), 2),
        "n_fit_measurements": max(r["n_fit_measurements"] for r in rows),
        "all_targets_met": all(all(r["targets_met"].values()) for r in rows),
        "aggregation": "worst batch size per figure; profile_seconds is the total over batch sizes",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts, short protocol")
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-fit", type=int, default=100)
    parser.add_argument("--n-heldout", type=int, default=50)
    parser.add_argument("--budget-s", type=float, default=300.0, help="profiling seconds per batch size")
    parser.add_argument("--space", default="bert-full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=None, help="where latency models are written")
    parser.add_argument("--checks-only", action="store_true",
                        help="only the sparsity and all-int8 checks, on the committed latency models")
    args = parser.parse_args(argv)
    protocol = Protocol()
    if args.checks_only:
        return checks_only(args, CompressFactory(args.model), protocol)
    if args.quick:
        args.n_fit, args.n_heldout, args.budget_s = min(args.n_fit, 12), min(args.n_heldout, 8), 120.0
        protocol = QUICK
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="autoprune-lm-")) if args.quick
                               else REPO / "latency_models")
    began = time.monotonic()
    factory = CompressFactory(args.model)
    space = SearchSpace.load(args.space, factory.shape)
    per_batch = {f"batch_{b}": run_batch(args, factory, space, b, out_dir, protocol) for b in args.batches}
    result: dict[str, Any] = {
        "summary": summary(per_batch),
        **per_batch,
        "setup": {
            "model": args.model, "backend": "torch", "seq_len": args.seq_len, "threads": args.threads,
            "space": space.name, "n_fit": args.n_fit, "n_heldout": args.n_heldout,
            "profile_budget_s_per_batch": args.budget_s, "quick": args.quick,
            "protocol": protocol.__dict__, "total_seconds": round(time.monotonic() - began, 1),
        },
    }
    name = "latency_predictor.quick.json" if args.quick else "latency_predictor.json"
    target = REPO / "benchmarks" / "results" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
