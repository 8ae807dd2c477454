"""Search spaces and architectures.

An :class:`Architecture` is a per-layer tuple of :class:`LayerConfig`; it is independent of
any search space and hashable, with a stable JSON form and a short content hash that the
trials store uses as a uniqueness key. A :class:`SearchSpace` is the declarative choice set of
a ``search_spaces/*.yaml`` file *bound* to a base model's shape (layer count, head count,
FFN width): it samples, mutates, crosses over, encodes architectures as integer vectors (for
pymoo, Optuna and RL controllers) and decodes them back, and gives analytic statistics
(parameters, FLOPs, bytes) that the compression engine's real models must match.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from autoprune.errors import SpaceError

Pattern = str  # "dense", "unstructured" or "N:M" (e.g. "2:4")
FIELDS: tuple[str, ...] = ("keep", "heads", "ffn", "sparsity", "pattern", "bits")
SUPPORTED_BITS = (32, 8, 4)


def parse_nm(pattern: str) -> tuple[int, int] | None:
    """``"2:4"`` -> ``(2, 4)``; ``None`` for ``dense``/``unstructured``."""
    if ":" not in pattern:
        return None
    n_text, m_text = pattern.split(":", 1)
    try:
        n, m = int(n_text), int(m_text)
    except ValueError as exc:
        raise SpaceError(f"pattern {pattern!r}: expected dense, unstructured or N:M") from exc
    if not 0 < n < m:
        raise SpaceError(f"pattern {pattern!r}: N:M needs 0 < N < M")
    return n, m


def pattern_sparsity(pattern: str, sparsity: float) -> float:
    """The fraction of weights a layer's pattern zeroes."""
    if pattern == "dense":
        return 0.0
    nm = parse_nm(pattern)
    if nm is not None:
        return 1.0 - nm[0] / nm[1]
    return float(sparsity)


@dataclass(frozen=True, order=True)
class LayerConfig:
    """One encoder layer's compression.

    ``heads`` is the number of attention heads kept (0 removes the attention sub-block),
    ``ffn`` the fraction of FFN neurons kept (0 removes the FFN sub-block), ``sparsity`` the
    fraction of the remaining linear weights zeroed when ``pattern`` is ``unstructured``
    (implied by N:M patterns, 0 for ``dense``), ``bits`` the weight bit-width.
    """

    keep: bool = True
    heads: int = 12
    ffn: float = 1.0
    sparsity: float = 0.0
    pattern: Pattern = "dense"
    bits: int = 32

    @classmethod
    def dropped(cls) -> LayerConfig:
        """The one canonical form of a dropped layer (its other fields mean nothing)."""
        return cls(keep=False, heads=0, ffn=0.0, sparsity=0.0, pattern="dense", bits=32)

    def canonical(self) -> LayerConfig:
        """Same model, one spelling: dropped layers collapse, sparsity follows the pattern."""
        if not self.keep:
            return LayerConfig.dropped()
        sparsity = round(pattern_sparsity(self.pattern, self.sparsity), 6)
        pattern = self.pattern
        if pattern == "unstructured" and sparsity == 0.0:
            pattern = "dense"
        return replace(self, heads=int(self.heads), ffn=round(float(self.ffn), 6),
                       sparsity=sparsity, pattern=pattern, bits=int(self.bits))

    @property
    def effective_sparsity(self) -> float:
        return pattern_sparsity(self.pattern, self.sparsity) if self.keep else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Architecture:
    """A per-layer compression configuration; hashable, with a stable JSON form."""

    layers: tuple[LayerConfig, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(layer.canonical() for layer in self.layers))

    @classmethod
    def dense(cls, num_layers: int, num_heads: int) -> Architecture:
        return cls(tuple(LayerConfig(heads=num_heads) for _ in range(num_layers)))

    @classmethod
    def uniform(cls, num_layers: int, layer: LayerConfig) -> Architecture:
        return cls(tuple(layer for _ in range(num_layers)))

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[LayerConfig]:
        return iter(self.layers)

    def __getitem__(self, index: int) -> LayerConfig:
        return self.layers[index]

    @property
    def kept_layers(self) -> list[int]:
        return [i for i, layer in enumerate(self.layers) if layer.keep]

    def to_list(self) -> list[dict[str, Any]]:
        return [layer.to_dict() for layer in self.layers]

    def to_json(self) -> str:
        """Stable JSON: the same architecture always gives the same bytes."""
        return json.dumps(self.to_list(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_list(cls, data: Sequence[dict[str, Any]]) -> Architecture:
        try:
            return cls(tuple(LayerConfig(**dict(item)) for item in data))
        except TypeError as exc:
            raise SpaceError(f"architecture: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpaceError(f"architecture JSON: {exc}") from exc
        if not isinstance(data, list):
            raise SpaceError("architecture JSON: expected a list of layers")
        return cls.from_list(data)

    @classmethod
    def from_summary(cls, text: str) -> Architecture:
        """The inverse of :meth:`summary`: ``"h4/f0.4/b8 h6/f0.5/2:4 -"`` back into layers."""
        layers = []
        for token in text.split():
            if token == "-":
                layers.append(LayerConfig.dropped())
                continue
            fields: dict[str, Any] = {}
            for part in token.split("/"):
                try:
                    if ":" in part:
                        fields["pattern"] = part
                    elif part[:1] == "h":
                        fields["heads"] = int(part[1:])
                    elif part[:1] == "f":
                        fields["ffn"] = float(part[1:])
                    elif part[:1] == "s":
                        fields.update(sparsity=float(part[1:]), pattern="unstructured")
                    elif part[:1] == "b":
                        fields["bits"] = int(part[1:])
                    else:
                        raise ValueError(part)
                except ValueError:
                    raise SpaceError(f"architecture {text!r}: cannot read {part!r} of layer "
                                     f"{len(layers)}") from None
            layers.append(LayerConfig(**fields))
        if not layers:
            raise SpaceError("architecture: empty summary")
        return cls(tuple(layers))

    @property
    def hash(self) -> str:
        """A short content hash (12 hex digits) of the stable JSON."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def summary(self) -> str:
        """A compact human-readable form, one token per layer: ``h6/f0.5/s0.5/b8``."""
        parts = []
        for layer in self.layers:
            if not layer.keep:
                parts.append("-")
                continue
            token = f"h{layer.heads}/f{layer.ffn:g}"
            if layer.pattern != "dense":
                token += f"/{layer.pattern}" if ":" in layer.pattern else f"/s{layer.sparsity:g}"
            if layer.bits != 32:
                token += f"/b{layer.bits}"
            parts.append(token)
        return " ".join(parts)


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a BERT-family base model that the statistics need."""

    num_layers: int
    hidden: int
    num_heads: int
    intermediate: int
    vocab_size: int = 30522
    max_position: int = 512
    type_vocab: int = 2
    num_labels: int = 2
    pooler: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden // self.num_heads

    @classmethod
    def from_config(cls, config: Any, num_labels: int | None = None) -> ModelShape:
        """From a Hugging Face ``BertConfig`` (or anything with the same attributes)."""
        return cls(
            num_layers=int(config.num_hidden_layers),
            hidden=int(config.hidden_size),
            num_heads=int(config.num_attention_heads),
            intermediate=int(config.intermediate_size),
            vocab_size=int(config.vocab_size),
            max_position=int(config.max_position_embeddings),
            type_vocab=int(getattr(config, "type_vocab_size", 2)),
            num_labels=int(num_labels if num_labels is not None else getattr(config, "num_labels", 2)),
            pooler=bool(getattr(config, "add_pooling_layer", True)),
        )

    def ffn_neurons(self, fraction: float) -> int:
        """FFN neurons kept for a fraction; the compression engine uses the same rounding."""
        return int(round(fraction * self.intermediate))


# MiniLM-L6-H384 (all-MiniLM-L6-v2), the packaged model the benchmarks run on.
MINILM_L6 = ModelShape(num_layers=6, hidden=384, num_heads=12, intermediate=1536)


@dataclass(frozen=True)
class ArchitectureStats:
    parameters: int          # every parameter of the model as built (embeddings to classifier)
    encoder_parameters: int  # the encoder layers only
    flops: int               # multiply-adds x 2 of one forward pass at (batch, seq_len)
    bytes: int               # weight storage at each layer's sparsity and bit-width
    nonzero_parameters: int  # parameters after sparsity


def _layer_linear_shapes(layer: LayerConfig, shape: ModelShape) -> list[tuple[int, int]]:
    """(in, out) of each linear of one kept layer, as the compression engine builds it."""
    h, d, hidden = layer.heads, shape.head_dim, shape.hidden
    linears: list[tuple[int, int]] = []
    if h > 0:
        linears += [(hidden, h * d)] * 3 + [(h * d, hidden)]
    f = shape.ffn_neurons(layer.ffn)
    if f > 0:
        linears += [(hidden, f), (f, hidden)]
    return linears


def layer_parameters(layer: LayerConfig, shape: ModelShape) -> tuple[int, int]:
    """(linear weight count, other parameter count) of one layer.

    A removed attention or FFN sub-block keeps its output bias and LayerNorm: that is what
    masking every head or neuron computes (``LayerNorm(x + bias)``), so removal and masking
    give the same outputs.
    """
    if not layer.keep:
        return 0, 0
    weights = sum(i * o for i, o in _layer_linear_shapes(layer, shape))
    hidden = shape.hidden
    other = 0
    if layer.heads > 0:
        other += 3 * layer.heads * shape.head_dim  # q, k, v biases
    other += hidden + 2 * hidden  # attention output bias + LayerNorm
    f = shape.ffn_neurons(layer.ffn)
    other += f + hidden + 2 * hidden  # intermediate bias, output bias + LayerNorm
    return weights, other


def architecture_stats(
    arch: Architecture, shape: ModelShape, batch: int = 1, seq_len: int = 128
) -> ArchitectureStats:
    """Analytic parameters, FLOPs and bytes; compressed models must match these counts."""
    if len(arch) != shape.num_layers:
        raise SpaceError(f"architecture has {len(arch)} layers, the base model {shape.num_layers}")
    hidden = shape.hidden
    embeddings = (shape.vocab_size + shape.max_position + shape.type_vocab) * hidden + 2 * hidden
    head = (hidden * hidden + hidden if shape.pooler else 0) + hidden * shape.num_labels + shape.num_labels
    encoder = nonzero = 0
    flops = 0
    weight_bytes = 0.0
    tokens = batch * seq_len
    for layer in arch:
        if not layer.keep:
            continue
        weights, other = layer_parameters(layer, shape)
        encoder += weights + other
        kept = weights * (1.0 - layer.effective_sparsity)
        nonzero += int(round(kept)) + other
        weight_bytes += kept * layer.bits / 8 + other * 4
        flops += 2 * tokens * weights
        if layer.heads > 0:
            flops += 2 * 2 * batch * layer.heads * seq_len * seq_len * shape.head_dim
    flops += 2 * batch * (head - shape.num_labels)
    total = embeddings + encoder + head
    weight_bytes += (embeddings + head) * 4
    return ArchitectureStats(
        parameters=total,
        encoder_parameters=encoder,
        flops=int(flops),
        bytes=int(round(weight_bytes)),
        nonzero_parameters=int(nonzero + embeddings + head),
    )


@dataclass(frozen=True)
class Dimension:
    """One searchable coordinate of the integer encoding: layer ``layer``'s ``name`` field."""

    layer: int
    name: str
    choices: tuple[Any, ...]

    @property
    def size(self) -> int:
        return len(self.choices)


def _as_tuple(value: Any, key: str) -> tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        raise SpaceError(f"per_layer.{key}: expected a non-empty list")
    if len(set(map(str, value))) != len(value):
        raise SpaceError(f"per_layer.{key}: duplicate choices")
    return tuple(value)


@dataclass(frozen=True)
class SpaceDefinition:
    """The parsed YAML, before it is bound to a base model."""

    name: str
    keep: tuple[bool, ...] = (True,)
    heads: tuple[int, ...] = (12,)
    ffn: tuple[float, ...] = (1.0,)
    sparsity: tuple[float, ...] = (0.0,)
    pattern: tuple[str, ...] = ("dense",)
    bits: tuple[int, ...] = (32,)
    min_layers: int = 1
    source: str = "<memory>"

    @classmethod
    def from_dict(cls, data: Any, source: str = "<memory>") -> SpaceDefinition:
        if not isinstance(data, dict):
            raise SpaceError(f"{source}: expected a mapping at the top level")
        unknown = set(data) - {"name", "per_layer", "constraints", "description"}
        if unknown:
            raise SpaceError(f"{source}: unknown key {sorted(unknown)[0]!r}")
        per_layer = data.get("per_layer") or {}
        if not isinstance(per_layer, dict):
            raise SpaceError(f"{source}: per_layer: expected a mapping")
        unknown = set(per_layer) - set(FIELDS)
        if unknown:
            raise SpaceError(f"{source}: per_layer.{sorted(unknown)[0]}: unknown field")
        values: dict[str, Any] = {}
        for key in FIELDS:
            if key in per_layer:
                values[key] = _as_tuple(per_layer[key], key)
        for flag in values.get("keep", ()):
            if not isinstance(flag, bool):
                raise SpaceError(f"{source}: per_layer.keep: {flag!r} is not true/false")
        for h in values.get("heads", ()):
            if not isinstance(h, int) or isinstance(h, bool) or h < 0:
                raise SpaceError(f"{source}: per_layer.heads: {h!r} is not a count >= 0")
        for f in values.get("ffn", ()):
            if not isinstance(f, (int, float)) or isinstance(f, bool) or not 0.0 <= f <= 1.0:
                raise SpaceError(f"{source}: per_layer.ffn: {f!r} is not a fraction in [0, 1]")
        for s in values.get("sparsity", ()):
            if not isinstance(s, (int, float)) or isinstance(s, bool) or not 0.0 <= s < 1.0:
                raise SpaceError(f"{source}: per_layer.sparsity: {s!r} is not in [0, 1)")
        for p in values.get("pattern", ()):
            if p not in ("dense", "unstructured"):
                parse_nm(str(p))
        for b in values.get("bits", ()):
            if b not in SUPPORTED_BITS:
                raise SpaceError(f"{source}: per_layer.bits: {b!r} not one of {SUPPORTED_BITS}")
        if "heads" in values:
            values["heads"] = tuple(sorted(values["heads"]))
        if "ffn" in values:
            values["ffn"] = tuple(sorted(float(f) for f in values["ffn"]))
        if "sparsity" in values:
            values["sparsity"] = tuple(sorted(float(s) for s in values["sparsity"]))
        constraints = data.get("constraints") or {}
        if not isinstance(constraints, dict) or set(constraints) - {"min_layers"}:
            raise SpaceError(f"{source}: constraints: only min_layers is known")
        min_layers = constraints.get("min_layers", 1)
        if not isinstance(min_layers, int) or min_layers < 1:
            raise SpaceError(f"{source}: constraints.min_layers: must be an integer >= 1")
        return cls(name=str(data.get("name", Path(source).stem)), min_layers=min_layers,
                   source=source, **values)


def builtin_space_dir() -> Path:
    """``search_spaces/`` beside the package (a source checkout or an editable install)."""
    return Path(__file__).resolve().parent.parent / "search_spaces"


def resolve_space_path(name_or_path: str | Path, base_dir: Path | None = None) -> Path:
    """A path (relative to ``base_dir``) or a built-in name such as ``bert-full``."""
    text = str(name_or_path)
    candidates: list[Path] = []
    path = Path(text).expanduser()
    if path.is_absolute():
        candidates.append(path)
    else:
        if base_dir is not None:
            candidates.append(base_dir / path)
        candidates.append(Path.cwd() / path)
        if "/" not in text:
            stem = text[:-5] if text.endswith(".yaml") else text
            candidates.append(builtin_space_dir() / f"{stem}.yaml")
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise SpaceError(f"search space {text!r}: no such file or built-in space")


@dataclass(frozen=True)
class SearchSpace:
    """A space definition bound to a base model's shape."""

    definition: SpaceDefinition
    shape: ModelShape
    heads: tuple[int, ...] = field(init=False)
    dims: tuple[Dimension, ...] = field(init=False)

    def __post_init__(self) -> None:
        heads = tuple(h for h in self.definition.heads if h <= self.shape.num_heads)
        if not heads:
            raise SpaceError(
                f"{self.definition.source}: per_layer.heads: no choice fits a model with "
                f"{self.shape.num_heads} heads"
            )
        object.__setattr__(self, "heads", heads)
        dims = []
        for layer in range(self.shape.num_layers):
            for name in FIELDS:
                choices = self.choices(name)
                if len(choices) > 1:
                    dims.append(Dimension(layer, name, choices))
        object.__setattr__(self, "dims", tuple(dims))
        if self.definition.min_layers > self.shape.num_layers:
            raise SpaceError(
                f"{self.definition.source}: constraints.min_layers: "
                f"{self.definition.min_layers} > {self.shape.num_layers} layers"
            )

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, shape: ModelShape = MINILM_L6,
             base_dir: Path | None = None) -> SearchSpace:
        resolved = resolve_space_path(path, base_dir)
        try:
            data = yaml.safe_load(resolved.read_text())
        except yaml.YAMLError as exc:
            raise SpaceError(f"{resolved}: not valid YAML ({exc.__class__.__name__})") from exc
        return cls(SpaceDefinition.from_dict(data, source=str(resolved)), shape)

    @classmethod
    def from_dict(cls, data: dict[str, Any], shape: ModelShape = MINILM_L6) -> SearchSpace:
        return cls(SpaceDefinition.from_dict(data), shape)

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def num_layers(self) -> int:
        return self.shape.num_layers

    def choices(self, name: str) -> tuple[Any, ...]:
        if name == "heads":
            return self.heads if hasattr(self, "heads") else self.definition.heads
        return getattr(self.definition, name)

    @property
    def size(self) -> int:
        """Number of integer vectors (an upper bound on distinct architectures)."""
        return math.prod(d.size for d in self.dims) if self.dims else 1

    # ---- membership -----------------------------------------------------------------------
    def _fits(self, layer: LayerConfig) -> str | None:
        if not layer.keep:
            return None if False in self.definition.keep else "keep=false is not allowed"
        if True not in self.definition.keep:
            return "keep=true is not allowed"
        if layer.heads not in self.heads:
            return f"heads={layer.heads} not in {list(self.heads)}"
        if not any(math.isclose(layer.ffn, f) for f in self.definition.ffn):
            return f"ffn={layer.ffn} not in {list(self.definition.ffn)}"
        if layer.bits not in self.definition.bits:
            return f"bits={layer.bits} not in {list(self.definition.bits)}"
        if layer.pattern not in self.definition.pattern:
            if not (layer.pattern == "dense" and "unstructured" in self.definition.pattern
                    and 0.0 in self.definition.sparsity):
                return f"pattern={layer.pattern!r} not in {list(self.definition.pattern)}"
        if layer.pattern == "unstructured" and not any(
            math.isclose(layer.sparsity, s) for s in self.definition.sparsity
        ):
            return f"sparsity={layer.sparsity} not in {list(self.definition.sparsity)}"
        return None

    def violations(self, arch: Architecture) -> list[str]:
        """Every reason ``arch`` is not in this space (empty when it is)."""
        problems = []
        if len(arch) != self.num_layers:
            return [f"{len(arch)} layers, the base model has {self.num_layers}"]
        for index, layer in enumerate(arch):
            problem = self._fits(layer)
            if problem:
                problems.append(f"layer {index}: {problem}")
        kept = len(arch.kept_layers)
        if kept < self.definition.min_layers:
            problems.append(f"{kept} layers kept, constraints.min_layers is {self.definition.min_layers}")
        return problems

    def contains(self, arch: Architecture) -> bool:
        return not self.violations(arch)

    def validate(self, arch: Architecture) -> Architecture:
        problems = self.violations(arch)
        if problems:
            raise SpaceError(f"architecture not in space {self.name!r}: {problems[0]}")
        return arch

    # ---- encoding -------------------------------------------------------------------------
    @property
    def upper_bounds(self) -> np.ndarray:
        """Inclusive upper bound of each vector coordinate (lower bounds are 0)."""
        return np.array([d.size - 1 for d in self.dims], dtype=np.int64)

    def _fixed_value(self, name: str) -> Any:
        return self.choices(name)[0]

    def decode(self, vector: Sequence[int] | np.ndarray) -> Architecture:
        """Integer vector -> architecture (dropped layers ignore their other coordinates).

        A vector that keeps fewer than ``min_layers`` layers is repaired by keeping the
        lowest-indexed dropped layers, so every vector decodes to a member of the space.
        """
        values = [int(v) for v in np.asarray(vector).reshape(-1)]
        if len(values) != len(self.dims):
            raise SpaceError(f"vector has {len(values)} coordinates, the space {len(self.dims)}")
        per_layer: list[dict[str, Any]] = [
            {name: self._fixed_value(name) for name in FIELDS} for _ in range(self.num_layers)
        ]
        for dim, value in zip(self.dims, values):
            if not 0 <= value < dim.size:
                raise SpaceError(f"vector: layer {dim.layer} {dim.name}={value} out of range")
            per_layer[dim.layer][dim.name] = dim.choices[value]
        kept = sum(bool(item["keep"]) for item in per_layer)
        for item in per_layer:
            if kept >= self.definition.min_layers:
                break
            if not item["keep"]:
                item["keep"] = True
                kept += 1
        layers = []
        for item in per_layer:
            if item["pattern"] == "unstructured" and item["sparsity"] == 0.0:
                item["pattern"] = "dense"
            layers.append(LayerConfig(**item))
        return Architecture(tuple(layers))

    def encode(self, arch: Architecture) -> np.ndarray:
        """Architecture -> integer vector; ``decode(encode(a)) == a`` for every member."""
        self.validate(arch)
        out = np.zeros(len(self.dims), dtype=np.int64)
        for position, dim in enumerate(self.dims):
            layer = arch[dim.layer]
            if not layer.keep and dim.name != "keep":
                continue
            value = getattr(layer, dim.name)
            if dim.name == "pattern" and value == "dense" and "dense" not in dim.choices:
                value = "unstructured"
            if dim.name == "sparsity" and layer.pattern != "unstructured":
                value = 0.0 if 0.0 in dim.choices else dim.choices[0]
            out[position] = _index_of(dim.choices, value)
        return out

    # ---- sampling and variation -----------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Architecture:
        vector = [int(rng.integers(0, d.size)) for d in self.dims]
        return self.decode(vector)

    def mutate(self, arch: Architecture, rng: np.random.Generator, rate: float | None = None) -> Architecture:
        """Resample each coordinate with probability ``rate`` (default 1/len); always changes."""
        if not self.dims:
            return arch
        vector = self.encode(arch)
        rate = rate if rate is not None else 1.0 / len(self.dims)
        for _ in range(100):
            mutated = vector.copy()
            flips = rng.random(len(self.dims)) < rate
            if not flips.any():
                flips[int(rng.integers(0, len(self.dims)))] = True
            for position in np.flatnonzero(flips):
                size = self.dims[position].size
                mutated[position] = (mutated[position] + int(rng.integers(1, size))) % size
            child = self.decode(mutated)
            if child != arch:
                return child
        return child

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        """Uniform crossover by whole layers (a layer's fields travel together)."""
        layers = tuple(a[i] if rng.random() < 0.5 else b[i] for i in range(self.num_layers))
        child = Architecture(layers)
        if self.contains(child):
            return child
        return a  # only min_layers can fail; fall back to a parent

    def dense(self) -> Architecture:
        return Architecture.dense(self.num_layers, self.shape.num_heads)

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """Architectures one coordinate step away (for local search and RL actions)."""
        vector = self.encode(arch)
        result = []
        for position, dim in enumerate(self.dims):
            for step in (-1, 1):
                value = vector[position] + step
                if 0 <= value < dim.size:
                    moved = vector.copy()
                    moved[position] = value
                    candidate = self.decode(moved)
                    if candidate != arch and candidate not in result:
                        result.append(candidate)
        return result

    # ---- statistics -----------------------------------------------------------------------
    def stats(self, arch: Architecture, batch: int = 1, seq_len: int = 128) -> ArchitectureStats:
        return architecture_stats(arch, self.shape, batch, seq_len)


def _index_of(choices: tuple[Any, ...], value: Any) -> int:
    for index, choice in enumerate(choices):
        if choice == value or (
            isinstance(choice, float) and isinstance(value, (int, float)) and math.isclose(choice, value)
        ):
            return index
    raise SpaceError(f"{value!r} not among {list(choices)}")

