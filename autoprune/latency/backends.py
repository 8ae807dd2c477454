"""Inference backends: what actually runs a model whose latency is measured.

A backend turns an architecture (through a :class:`ModelFactory`) or one operator block into a
zero-argument :data:`Runnable` on a fixed input of ``(batch, seq_len)``. Two are provided:

* ``torch``: PyTorch eager, fp32, with the compression engine's real int8/int4 kernels for
  layers with ``bits < 32``;
* ``onnxruntime``: the fp32 model exported with the dynamo ONNX exporter, its weight MatMuls
  quantized per layer by ONNX Runtime (dynamic int8, ``MatMulNBits`` 4-bit weight-only), run
  by an ``InferenceSession`` with a fixed intra-op thread count.

Neither exploits unstructured or N:M weight sparsity (dense kernels multiply zeros like any
number: MEASUREMENTS.md, 0.94-1.00x), which is why ``exploits_sparsity`` is false and the
predictor ignores sparsity for them.
"""

from __future__ import annotations

import io
import logging
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from autoprune.errors import LatencyModelError
from autoprune.latency.factory import ModelFactory
from autoprune.latency.operators import OperatorKey, extract_operators
from autoprune.latency.protocol import Runnable
from autoprune.space import Architecture


class Backend(ABC):
    """Runs models of one base model at one ``(batch, seq_len)`` with a fixed thread count."""

    name: ClassVar[str]
    exploits_sparsity: ClassVar[bool] = False

    def __init__(self, factory: ModelFactory, batch: int, seq_len: int, threads: int) -> None:
        if batch < 1 or seq_len < 1:
            raise LatencyModelError(f"batch {batch} / seq_len {seq_len}: both must be >= 1")
        if seq_len > factory.shape.max_position:
            raise LatencyModelError(
                f"seq_len {seq_len}: the model covers at most {factory.shape.max_position} positions"
            )
        self.factory, self.batch, self.seq_len, self.threads = factory, batch, seq_len, threads
        generator = torch.Generator().manual_seed(0)
        self.input_ids = torch.randint(1, factory.shape.vocab_size, (batch, seq_len), generator=generator)
        self.hidden = torch.randn(batch, seq_len, factory.shape.hidden, generator=generator)

    @abstractmethod
    def model(self, arch: Architecture) -> Runnable:
        """One end-to-end forward pass (input ids and an all-ones attention mask)."""

    @abstractmethod
    def operators(self, arch: Architecture) -> dict[OperatorKey, Runnable]:
        """Every distinct operator block of ``arch``'s model, each runnable on its own."""

    def block_input(self, name: str) -> torch.Tensor:
        return self.input_ids if name == "input_ids" else self.hidden


class TorchBackend(Backend):
    name = "torch"

    def model(self, arch: Architecture) -> Runnable:
        module = self.factory.build(arch, "real")
        ids, mask = self.input_ids, torch.ones_like(self.input_ids)
        return _inference(lambda: module(input_ids=ids, attention_mask=mask))

    def operators(self, arch: Architecture) -> dict[OperatorKey, Runnable]:
        module = self.factory.build(arch, "real")
        blocks = extract_operators(module, arch, self.factory.shape)
        return {key: _inference(_bind(block, self.block_input(name))) for key, (block, name) in blocks.items()}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, factory: ModelFactory, batch: int, seq_len: int, threads: int) -> None:
        super().__init__(factory, batch, seq_len, threads)
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise LatencyModelError("backend onnxruntime: the onnxruntime package is not installed") from exc
        self._workdir = tempfile.TemporaryDirectory(prefix="autoprune-ort-")
        self._count = 0

    def _build_fp32(self, arch: Architecture) -> nn.Module:
        """The fp32 model ONNX Runtime quantizes itself, with sparsity masks baked into the
        weights (an exported mask would add a multiplication the deployed model does not do)."""
        from autoprune.compress.modules import encoder_layers, layer_linears
        from autoprune.compress.sparsity import bake

        module = self.factory.build(arch, "none")
        for layer in encoder_layers(module):
            for linear in layer_linears(layer).values():
                bake(linear)
        return module

    def model(self, arch: Architecture) -> Runnable:
        module = _EndToEnd(self._build_fp32(arch))
        ids = self.input_ids
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        # Module index k of the exported encoder is the k-th *kept* layer of the architecture.
        bits = {f"bert.encoder.layer.{k}": arch[i].bits for k, i in enumerate(arch.kept_layers)}
        return self._session(module, inputs, bits)

    def operators(self, arch: Architecture) -> dict[OperatorKey, Runnable]:
        module = self._build_fp32(arch)
        blocks = extract_operators(module, arch, self.factory.shape)
        return {
            key: self._session(block, {name: self.block_input(name)}, {"": key.bits})
            for key, (block, name) in blocks.items()
        }

    def _session(self, module: nn.Module, inputs: Mapping[str, torch.Tensor],
                 bits_by_scope: Mapping[str, int]) -> Runnable:
        import onnxruntime as ort

        self._count += 1
        path = Path(self._workdir.name) / f"m{self._count}.onnx"
        _export(module.eval(), inputs, path)
        _quantize(path, bits_by_scope)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        path.unlink()  # the session holds the graph; a profile exports hundreds of models
        feeds = {name: tensor.numpy() for name, tensor in inputs.items()}
        return lambda: session.run(None, feeds)


class _EndToEnd(nn.Module):
    """Logits only, so the exported graph has one plain output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


@contextmanager
def _quiet() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx", "root", "")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _export(module: nn.Module, inputs: Mapping[str, torch.Tensor], path: Path) -> None:
    import warnings

    # The exporter narrates every step on stdout and logs each optimisation pass; a profile
    # exports hundreds of models, so that chatter is swallowed (errors still raise).
    with warnings.catch_warnings(), torch.no_grad(), _quiet():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, tuple(inputs.values()), dynamo=True,
                                    input_names=list(inputs), external_data=False, verbose=False)
    if program is None:  # pragma: no cover - dynamo export always returns a program
        raise LatencyModelError("onnx export returned nothing")
    program.save(str(path), external_data=False)


def _weight_matmuls(path: Path) -> list[tuple[str, list[str]]]:
    """(node name, module scopes) of every MatMul/Gemm multiplying a stored weight.

    The dynamo exporter records each node's enclosing modules in the node metadata
    (``pkg.torch.onnx.name_scopes``, e.g. ``['', 'bert', 'bert.encoder.layer.0', ...]``).
    """
    import ast

    import onnx

    graph = onnx.load(str(path)).graph
    weights = {init.name for init in graph.initializer}
    found = []
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2 or node.input[1] not in weights:
            continue
        text = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "[]")
        try:
            scopes = [str(s) for s in ast.literal_eval(text)]
        except (ValueError, SyntaxError):
            scopes = []
        found.append((node.name, scopes))
    return found


def _quantize(path: Path, bits_by_scope: Mapping[str, int]) -> None:
    """Quantize weight MatMuls in place: scope prefix -> bits (``""`` matches every node)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    by_bits: dict[int, list[str]] = {8: [], 4: []}
    matmuls = _weight_matmuls(path)
    for node, scopes in matmuls:
        for scope, bits in bits_by_scope.items():
            if bits in by_bits and _in_scope(scope, scopes):
                by_bits[bits].append(node)
                break
    if by_bits[4]:
        # ``nodes_to_include`` widens rather than restricts the selection, so every other
        # node is excluded explicitly.
        keep = sorted({node.name for node in onnx.load(str(path)).graph.node} - set(by_bits[4]))
        quantizer = MatMulNBitsQuantizer(str(path), bits=4, block_size=32, is_symmetric=True,
                                         nodes_to_exclude=keep)
        with _quiet():
            quantizer.process()
        quantizer.model.save_model_to_file(str(path), use_external_data_format=False)
    if by_bits[8]:
        with _quiet():
            quantize_dynamic(path, path, weight_type=QuantType.QInt8, nodes_to_quantize=by_bits[8])


def _in_scope(scope: str, scopes: list[str]) -> bool:
    """Whether a node's module scopes include ``scope`` (wrappers may prefix it: ``model.``)."""
    return scope == "" or any(s == scope or s.endswith("." + scope) for s in scopes)


def _bind(block: nn.Module, tensor: torch.Tensor) -> Callable[[], Any]:
    return lambda: block(tensor)


def _inference(run: Callable[[], Any]) -> Runnable:
    def call() -> Any:
        with torch.inference_mode():
            return run()
    return call


BACKENDS: dict[str, type[Backend]] = {TorchBackend.name: TorchBackend, OnnxRuntimeBackend.name: OnnxRuntimeBackend}


def get_backend(name: str) -> type[Backend]:
    try:
        return BACKENDS[name]
    except KeyError:
        raise LatencyModelError(f"backend {name!r}: expected one of {sorted(BACKENDS)}") from None
