"""Weight quantization: fake quant for training, real int8 and packed int4 for inference.

One symmetric scheme serves all three, so what a model trains against (fake) is exactly the
weight it is deployed with (real): per output channel for int8, per group of
:data:`INT4_GROUP` input weights for int4; ``scale = max|w| / qmax``, ``q = round(w / scale)``.

* int8 uses PyTorch's dynamically quantized Linear (``torch.ao.nn.quantized.dynamic``, fbgemm/x86
  kernels; activations quantized per batch on the fly). The eager ``torch.ao.quantization`` API
  is deprecated, but on this CPU it is the fast int8 path: torchao 0.18's int8 configs measured
  slower than fp32 (MEASUREMENTS.md). Its deprecation warnings are silenced here only.
* int4 is weight-only with real packed storage (two 4-bit values per byte + per-group fp32
  scales) in :class:`Int4Linear`, which dequantizes in ``forward``. That stores 5 bits per
  weight (6.4x less than fp32) but runs *slower* than fp32 on CPU (benchmarks/compress_speed.py,
  ``speedup_extra.int4``: about 0.4-0.7x of dense MiniLM). PyTorch's CPU int4 kernel
  (``_weight_int4pack_mm_for_cpu``) is no way out: it needs bf16 activations and measured ~2x
  slower than an fp32 matmul at 128x384x1536 here. int4 is a storage format, not a speed-up.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from autoprune.errors import SpaceError

INT4_GROUP = 32
_QMAX = {8: 127, 4: 7}


@contextmanager
def _quiet_deprecation() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, message=".*deprecated.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


def _group_size(bits: int, in_features: int) -> int:
    if bits == 8:
        return in_features
    if bits == 4:
        return INT4_GROUP
    raise SpaceError(f"bits={bits}: only 8 and 4 are quantized")


def quantize_weight(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, scales)``: int8 codes ``[out, padded_in]`` and fp32 scales ``[out, groups]``.

    Inputs are zero-padded to a whole number of groups (zeros quantize to zero)."""
    out_features, in_features = weight.shape
    group = _group_size(bits, in_features)
    padded = -(-in_features // group) * group
    w = F.pad(weight.detach().float(), (0, padded - in_features)).view(out_features, -1, group)
    qmax = _QMAX[bits]
    scales = (w.abs().amax(dim=2) / qmax).clamp_min(1e-12)
    q = torch.round(w / scales.unsqueeze(2)).clamp(-qmax - 1, qmax).to(torch.int8)
    return q.view(out_features, padded), scales


def dequantize_weight(q: torch.Tensor, scales: torch.Tensor, in_features: int) -> torch.Tensor:
    out_features, padded = q.shape
    groups = scales.shape[1]
    w = q.view(out_features, groups, padded // groups).float() * scales.unsqueeze(2)
    return w.view(out_features, padded)[:, :in_features]


class FakeQuant(nn.Module):
    """Parametrization: the weight as it will be after real quantization, with a
    straight-through gradient (identity), so training adapts to the quantization error."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        q, scales = quantize_weight(weight, self.bits)
        rounded = dequantize_weight(q, scales, weight.shape[1]).to(weight.dtype)
        return weight + (rounded - weight).detach()


def add_fake_quant(linear: nn.Module, bits: int) -> None:
    parametrize.register_parametrization(linear, "weight", FakeQuant(bits))


# ---- int8: PyTorch's dynamic quantized Linear ------------------------------------------------
def _dynamic_linear_class() -> type[nn.Module]:
    with _quiet_deprecation():
        from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear
    return DynamicQuantizedLinear


def is_int8_linear(module: nn.Module) -> bool:
    return isinstance(module, _dynamic_linear_class())


def int8_linear(q: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A dynamic int8 Linear from per-channel codes ``q`` [out, in] and ``scales`` [out] or
    [out, 1]; used both when quantizing and when reloading, so reloads are bit-exact."""
    out_features, in_features = q.shape
    scales = scales.reshape(out_features)
    with _quiet_deprecation():
        module = _dynamic_linear_class()(
            in_features, out_features, bias_=bias is not None, dtype=torch.qint8
        )
        weight = torch._make_per_channel_quantized_tensor(
            q.to(torch.int8).cpu(),
            scales.double().cpu(),
            torch.zeros(out_features, dtype=torch.long),
            0,
        )
        module.set_weight_bias(weight, None if bias is None else bias.detach().float().cpu())
    return module


def int8_parts(module: nn.Module) -> dict[str, torch.Tensor]:
    """The exact stored form of a dynamic int8 Linear: codes, scales, bias."""
    with _quiet_deprecation():
        weight = module.weight()
        parts = {
            "weight_int8": weight.int_repr().contiguous(),
            "weight_scales": weight.q_per_channel_scales().float().contiguous(),
        }
        bias = module.bias()
    if bias is not None:
        parts["bias"] = bias.detach().float().contiguous()
    return parts


# ---- int4: packed weight-only ----------------------------------------------------------------
class Int4Linear(nn.Module):
    """Weight-only int4 Linear: ``packed`` holds two 4-bit codes per byte, ``scales`` one fp32
    scale per :data:`INT4_GROUP` inputs; ``forward`` dequantizes and runs an fp32 matmul."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        groups = -(-in_features // INT4_GROUP)
        self.register_buffer(
            "packed", torch.zeros(out_features, groups * INT4_GROUP // 2, dtype=torch.uint8)
        )
        self.register_buffer("scales", torch.zeros(out_features, groups))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int4Linear:
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        q, scales = quantize_weight(linear.weight, 4)
        nibbles = (q.to(torch.int16) + 8).to(torch.uint8)  # [-8, 7] -> [0, 15]
        with torch.no_grad():
            module.packed.copy_(nibbles[:, 0::2] | (nibbles[:, 1::2] << 4))
            module.scales.copy_(scales)
            if linear.bias is not None:
                module.bias.copy_(linear.bias.detach())
        return module.to(linear.weight.device)

    def codes(self) -> torch.Tensor:
        low = (self.packed & 0x0F).to(torch.int8) - 8
        high = (self.packed >> 4).to(torch.int8) - 8
        return torch.stack((low, high), dim=2).view(self.out_features, -1)

    def dequantized_weight(self) -> torch.Tensor:
        return dequantize_weight(self.codes(), self.scales, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight().to(x.dtype), self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, group={INT4_GROUP}"
        )


def real_quantized(linear: nn.Linear, bits: int) -> nn.Module:
    """The real quantized replacement of a plain (unparametrized) fp32 Linear."""
    if bits == 8:
        q, scales = quantize_weight(linear.weight, 8)
        return int8_linear(q, scales, linear.bias)
    if bits == 4:
        return Int4Linear.from_linear(linear)
    raise SpaceError(f"bits={bits}: only 8 and 4 are quantized")


def logical_parameters(module: nn.Module) -> int:
    """Parameters a quantized module stands for (weights + bias), which ``.parameters()`` misses."""
    if is_int8_linear(module):
        return sum(t.numel() for name, t in int8_parts(module).items() if name != "weight_scales")
    if isinstance(module, Int4Linear):
        return module.in_features * module.out_features  # the bias is a Parameter, counted already
    return 0
