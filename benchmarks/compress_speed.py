"""Measured speed of canonical compressed MiniLM-L6 variants against the dense model.

Each variant is built by the compression engine (``autoprune.compress.compress`` with
``quantize="real"``: int8 layers run PyTorch's dynamic int8 kernels, sparsity masks are baked
into dense weights) from the packaged all-MiniLM-L6-v2, and timed with the shared interleaved
protocol (``autoprune.latency.measure``: warm-up, rounds that time every variant in a shuffled
order, minimum of a few repeats per round, median over rounds) at sequence length 128 and
batch 1 and 8, with a fixed thread count.

Prints JSON and writes ``benchmarks/results/compress_speed.json``:

* ``speedup`` / ``speedup_b8``: variant -> median over rounds of the per-round speedup (the
  dense model's time over the variant's, both from the same interleaved round), at batch 1 / 8;
* ``spread``: per batch and variant, the median and p10/p90 latency (ms), the p10/p90 of the
  per-round speedups, and the ratio of the median latencies (for comparison);
* ``speedup_extra``: variants outside the canonical list: the engine's packed int4
  weight-only layers, and with ``--torchao`` torchao 0.18's int8 configs on every Linear (off by
  default: on this CPU ``Int8DynamicActivationInt8WeightConfig`` ran at ~0.05-0.1x of dense and
  ``Int8WeightOnlyConfig`` at ~0.5x, so they would dominate the run time);
* ``setup``: threads, rounds, library versions.

Usage: ``python benchmarks/compress_speed.py [--threads 2] [--rounds 15] [--quick] [--torchao]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from autoprune.compress import compress, magnitude_importance
from autoprune.latency import Measurement, Protocol, measure
from autoprune.models import MINILM_ALIAS, load_base
from autoprune.space import Architecture, LayerConfig

RESULTS = Path(__file__).resolve().parent / "results" / "compress_speed.json"
SEQ_LEN = 128
CANONICAL = (
    "heads50",
    "ffn50",
    "layers50",
    "heads50_ffn50",
    "int8",
    "layers50_int8",
    "unstructured90",
    "nm24",
)
EXTRA = ("int4", "torchao_int8_dynamic", "torchao_int8_weight_only")


def torchao_variants(dense: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """torchao's int8 configs on every Linear, for comparison with the engine's int8 path
    (PyTorch's dynamic int8 kernels); empty when torchao is not importable."""
    try:
        from torchao.quantization import (
            Int8DynamicActivationInt8WeightConfig,
            Int8WeightOnlyConfig,
            quantize_,
        )
    except ImportError:
        return {}
    built = {}
    for name, config in (
        ("torchao_int8_dynamic", Int8DynamicActivationInt8WeightConfig()),
        ("torchao_int8_weight_only", Int8WeightOnlyConfig()),
    ):
        model = copy.deepcopy(dense)
        quantize_(model, config)
        built[name] = model.eval()
    return built


def variants(num_layers: int, num_heads: int) -> dict[str, Architecture]:
    """The canonical architectures (every kept layer alike; layers50 keeps every other layer)."""
    half = num_heads // 2

    def uniform(**fields: Any) -> Architecture:
        return Architecture.uniform(
            num_layers, LayerConfig(heads=fields.pop("heads", num_heads), **fields)
        )

    def every_other(layer: LayerConfig) -> Architecture:
        return Architecture(
            tuple(layer if i % 2 == 0 else LayerConfig.dropped() for i in range(num_layers))
        )

    return {
        "dense": uniform(),
        "heads50": uniform(heads=half),
        "ffn50": uniform(ffn=0.5),
        "layers50": every_other(LayerConfig(heads=num_heads)),
        "heads50_ffn50": uniform(heads=half, ffn=0.5),
        "int8": uniform(bits=8),
        "layers50_int8": every_other(LayerConfig(heads=num_heads, bits=8)),
        "unstructured90": uniform(pattern="unstructured", sparsity=0.9),
        "nm24": uniform(pattern="2:4"),
        "int4": uniform(bits=4),
    }


def _paired_speedups(dense: Measurement, variant: Measurement, rounds: int) -> np.ndarray:
    """Per-round speedups: dense's minimum over the variant's in the *same* round, so load that
    hits one round hits both sides. Only the first ``rounds`` rounds time every model (later
    re-measurement rounds cover the noisy models only), so only those are paired."""
    return np.asarray(dense.round_minima_ms[:rounds]) / np.asarray(variant.round_minima_ms[:rounds])


def _spread(dense: Measurement, variant: Measurement, rounds: int) -> dict[str, float]:
    ratios = _paired_speedups(dense, variant, rounds)
    return {
        "median_ms": round(variant.median_ms, 3),
        "p10_ms": round(variant.p10_ms, 3),
        "p90_ms": round(variant.p90_ms, 3),
        "speedup_p10": round(float(np.percentile(ratios, 10)), 3),
        "speedup_p90": round(float(np.percentile(ratios, 90)), 3),
        "ratio_of_medians": round(dense.median_ms / variant.median_ms, 3),
        "rounds": variant.rounds,
    }


def run(threads: int, rounds_b1: int, rounds_b8: int, with_torchao: bool = False) -> dict[str, Any]:
    torch.manual_seed(0)
    base = load_base(MINILM_ALIAS, num_labels=2).eval()
    config = base.config
    importance = magnitude_importance(base)
    models = {
        name: compress(base, arch, importance, quantize="real").eval()
        for name, arch in variants(config.num_hidden_layers, config.num_attention_heads).items()
    }
    if with_torchao:
        models.update(torchao_variants(models["dense"]))
    result: dict[str, Any] = {"speedup": {}, "speedup_b8": {}, "spread": {}, "speedup_extra": {}}
    for batch, rounds, key in ((1, rounds_b1, "speedup"), (8, rounds_b8, "speedup_b8")):
        generator = torch.Generator().manual_seed(batch)
        inputs = {
            "input_ids": torch.randint(
                1000, config.vocab_size, (batch, SEQ_LEN), generator=generator
            ),
            "attention_mask": torch.ones(batch, SEQ_LEN, dtype=torch.long),
        }
        protocol = Protocol(rounds=rounds, round_target_ms=40.0, max_repeats=10, warmup=3)
        measured = measure(models, protocol, threads=threads, inputs=inputs)
        dense = measured["dense"]
        spread = {"dense": _spread(dense, dense, rounds)}
        for name in (*CANONICAL, *(extra for extra in EXTRA if extra in measured)):
            speedup = round(float(np.median(_paired_speedups(dense, measured[name], rounds))), 3)
            if name in CANONICAL:
                result[key][name] = speedup
            else:
                result["speedup_extra"].setdefault(f"b{batch}", {})[name] = speedup
            spread[name] = _spread(dense, measured[name], rounds)
        result["spread"][f"b{batch}"] = spread
    result["setup"] = {
        "model": MINILM_ALIAS,
        "seq_len": SEQ_LEN,
        "threads": threads,
        "rounds": {"b1": rounds_b1, "b8": rounds_b8},
        "torch": torch.__version__,
        "quantized_engine": torch.backends.quantized.engine,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "note": "unstructured90 and nm24 are baked into dense weights (no sparse CPU kernel)",
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds at batch 1")
    parser.add_argument("--rounds-b8", type=int, default=9, help="interleaved rounds at batch 8")
    parser.add_argument("--quick", action="store_true", help="few rounds (smoke run, noisy)")
    parser.add_argument(
        "--torchao", action="store_true", help="also time torchao's int8 configs (slow: minutes)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rounds_b1, rounds_b8 = (3, 2) if args.quick else (args.rounds, args.rounds_b8)
    started = time.perf_counter()
    result = run(args.threads, rounds_b1, rounds_b8, with_torchao=args.torchao)
    result["setup"]["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
