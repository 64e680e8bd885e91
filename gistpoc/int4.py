"""Group-wise int4 weights for 4-bit answering (issue 29): one quantisation, the layouts of three kernel libraries.

NF4 through bitsandbytes is the design's format, but its 4-bit GEMV reads weights at a fifth of the card's bandwidth
(``docs/gpu_results.md``). Libraries made for batch-1 decode use a plain affine int4 format instead:

- **tinygemm**, PyTorch's own int4 kernel (``torch.ops.aten._weight_int4pack_mm``, the kernel behind torchao's
  ``Int4WeightOnlyConfig`` tile-packed layout), on CUDA and, as ``_for_cpu``, on CPU;
- **gemlite** (Triton GEMV / GEMM kernels for low-bit weights, ``gemlite.helper.A16Wn.from_weights``), CUDA only
  (``eval.quantization: int4-gemlite``);
- **fbgemm** (FBGEMM's gen-AI CUTLASS kernels for Hopper, ``torch.ops.fbgemm.bf16i4bf16_shuffled`` over a
  ``preshuffle_i4`` weight: the mixed-input GEMM torchao's preshuffled int4 layout calls), CUDA sm90 only, from the
  ``fbgemm-gpu-genai`` wheel built for the machine's PyTorch (``eval.quantization: int4-fbgemm``).
``bench/int4_kernels.py`` measures the libraries at 1-64 rows.

All read the same numbers: per row and per ``group_size`` input columns, a scale ``s`` and a zero point ``z`` with
``w = (q - z) * s``, ``q`` in 0..15 (asymmetric min-max, ``z`` fractional). ``quantize`` makes them once;
``TinyGemmWeight``, ``gemlite_module`` and ``FbgemmWeight`` pack them; ``dequantize`` is the reference all are checked
against.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

GROUP_SIZE = 128  # torchao's default for int4 weight-only; 4 bits + 2 x 16 bits per 128 weights = 4.25 bits a weight
INNER_K_TILES = 8  # tinygemm's packing (2, 4 or 8); 8 is torchao's default


@dataclass
class Int4Quant:
    """An ``(out, in)`` weight in group-wise affine int4: ``q`` uint8 0..15, ``scale`` and ``zero`` ``(out, in / group)``."""

    q: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    group_size: int

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.q.shape)

    def nbytes(self) -> int:
        """Bytes a kernel reads: half a byte a weight, and a bf16 scale and zero per group."""
        return self.q.numel() // 2 + 2 * 2 * self.scale.numel()


def quantize(w: torch.Tensor, group_size: int = GROUP_SIZE) -> Int4Quant:
    """Min-max affine int4 of each ``group_size`` consecutive input columns of each row (fp32 arithmetic); the scale and
    zero are kept in bf16, as both kernels read them, and ``q`` is rounded against those bf16 values."""
    out_f, in_f = w.shape
    if in_f % group_size:
        raise ValueError(f"int4: in_features {in_f} is not a multiple of group_size {group_size}")
    g = w.detach().float().reshape(out_f, in_f // group_size, group_size)
    lo, hi = g.amin(-1), g.amax(-1)
    scale = ((hi - lo) / 15).clamp(min=1e-8).to(torch.bfloat16)
    zero = (-lo / scale.float()).to(torch.bfloat16)
    q = torch.round(g / scale.float()[..., None] + zero.float()[..., None]).clamp(0, 15).to(torch.uint8)
    return Int4Quant(q.reshape(out_f, in_f), scale, zero, group_size)


def dequantize(qw: Int4Quant, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The weight the kernels compute with: ``(q - zero) * scale``."""
    out_f, in_f = qw.shape
    g = qw.q.reshape(out_f, in_f // qw.group_size, qw.group_size).float()
    return ((g - qw.zero.float()[..., None]) * qw.scale.float()[..., None]).reshape(out_f, in_f).to(dtype)


def zero_in_weight_domain(qw: Int4Quant) -> torch.Tensor:
    """tinygemm's and FBGEMM's zero (fp32, ``(out, in / group)``): both read ``w = (q - 8) * s + z'``, so ``z' = (8 - z) * s``."""
    return (8 - qw.zero.float()) * qw.scale.float()


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """``|got - want| / |want|`` (Frobenius, in fp32): how a kernel's output is compared with its reference."""
    return float((got.float() - want.float()).norm() / want.float().norm())


def probe_error(qw: Int4Quant, kernel) -> float:
    """Relative error of ``kernel(x)`` against ``x @ dequantize(qw).T`` on 8 random bf16 rows: how each library's
    packing is checked once, on the device the kernel runs on."""
    probe = torch.randn(8, qw.shape[1], dtype=torch.bfloat16, device=qw.q.device)
    return relative_error(kernel(probe), probe.float() @ dequantize(qw).T)


class TinyGemmWeight:
    """``qw`` packed for PyTorch's int4 kernel on ``qw``'s device: ``y = x @ W.T`` for bf16 ``x`` (CUDA) or fp32 / bf16
    ``x`` (CPU). tinygemm's zero is in the weight's domain, ``w = (q - 8) * s + z'``, so ``z' = (8 - z) * s``."""

    def __init__(self, qw: Int4Quant, inner_k_tiles: int | None = None):
        out_f, in_f = qw.shape
        if inner_k_tiles is None:  # the widest tiling the input width allows (the CUDA kernel needs in_f % (16 * tiles) == 0)
            inner_k_tiles = next((t for t in (INNER_K_TILES, 4, 2) if in_f % (16 * t) == 0), None)
            if inner_k_tiles is None:
                raise ValueError(f"int4: in_features {in_f} is not a multiple of 32, which tinygemm needs")
        self.shape, self.group_size = (out_f, in_f), qw.group_size
        self.cpu = qw.q.device.type == "cpu"
        zero_w = zero_in_weight_domain(qw)
        # (in / group, out, 2): scale then zero, as the kernel reads them
        self.scales_and_zeros = torch.stack([qw.scale.float(), zero_w], -1).transpose(0, 1).contiguous().to(torch.bfloat16)
        if self.cpu:
            self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(qw.q.to(torch.int32), inner_k_tiles)
            return
        # CUDA: two weights a byte; which column goes in the high nibble has changed between PyTorch versions, so keep
        # the order that computes the de-quantised weight on a probe (checked once per weight)
        for hi_first in (True, False):
            a, b = (qw.q[:, ::2], qw.q[:, 1::2]) if hi_first else (qw.q[:, 1::2], qw.q[:, ::2])
            self.packed = torch.ops.aten._convert_weight_to_int4pack((a << 4 | b).to(torch.uint8), inner_k_tiles)
            err = probe_error(qw, self)
            if err <= 2e-2:
                return
        raise RuntimeError(f"int4: tinygemm does not reproduce the quantised {tuple(qw.shape)} weight (relative error {err:.3g})")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return tinygemm_mm(x, self.packed, self.group_size, self.scales_and_zeros)


def tinygemm_mm(x: torch.Tensor, packed: torch.Tensor, group_size: int, scales_and_zeros: torch.Tensor) -> torch.Tensor:
    """``x @ W.T`` for a ``TinyGemmWeight``'s packed weight, on the packed weight's device (bf16 on CUDA; CPU: x's dtype)."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    if packed.device.type == "cpu":
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, packed, group_size, scales_and_zeros.to(x2.dtype))
    else:
        y = torch.ops.aten._weight_int4pack_mm(x2.to(torch.bfloat16).contiguous(), packed, group_size, scales_and_zeros)
    return y.reshape(*lead, y.shape[-1]).to(x.dtype)


def gemlite_module(qw: Int4Quant, dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
    """``qw`` as a gemlite layer on ``qw``'s (CUDA) device: gemlite reads ``(q - zero) * scale`` as given, so both
    libraries compute with the same numbers. gemlite picks its kernel (GEMV, split-K, GEMM) by the number of rows."""
    if qw.q.device.type != "cuda":
        raise ValueError("int4-gemlite (eval.quantization) runs gemlite's Triton kernels, which need a CUDA device: "
                         "use int4-tinygemm on CPU")
    try:
        from gemlite.helper import A16Wn
    except ImportError as err:
        raise ImportError(f"int4-gemlite (eval.quantization) needs the gemlite package (pip install gemlite): {err}") from err
    return A16Wn(device=str(qw.q.device), dtype=dtype).from_weights(qw.q, qw.scale.to(dtype), qw.zero.to(dtype), W_nbits=4,
                                                                     group_size=qw.group_size)


def fbgemm_ops():
    """FBGEMM's gen-AI operators (``torch.ops.fbgemm``), loaded once; a clear error where they cannot be."""
    try:
        import fbgemm_gpu.experimental.gen_ai  # noqa: F401  (registers torch.ops.fbgemm.*)
    except (ImportError, OSError) as err:
        raise ImportError("int4-fbgemm (eval.quantization) needs FBGEMM's gen-AI kernels, the fbgemm-gpu-genai wheel built "
                          f"for this PyTorch (1.6.x for torch 2.11, CUDA 13) on a CUDA machine: {err}") from err
    return torch.ops.fbgemm


class FbgemmWeight:
    """``qw`` packed for FBGEMM's mixed-input GEMM (bf16 activations, int4 weights, CUTLASS on sm90): ``y = x @ W.T``.
    FBGEMM reads signed nibbles ``q' = q - 8`` with a zero in the weight's domain, ``w = q' * s + z'``, so
    ``z' = (8 - z) * s`` (``zero_in_weight_domain``, as tinygemm's); scale and zero are ``(in / group, out)``, and ``preshuffle_i4`` puts the
    weight in the order the kernel's tensor-core loads want. Checked once against ``dequantize`` on a probe."""

    def __init__(self, qw: Int4Quant):
        if qw.q.device.type != "cuda":
            raise ValueError("int4-fbgemm (eval.quantization) runs FBGEMM's CUTLASS kernels, which need a CUDA (sm90) "
                             "device: use int4-tinygemm on CPU")
        ops = fbgemm_ops()
        self.shape = tuple(qw.shape)
        signed = (qw.q.to(torch.int16) - 8).to(torch.int8)
        packed = torch.bitwise_or(torch.bitwise_and(signed[:, ::2], 0xF), torch.bitwise_left_shift(signed[:, 1::2], 4)).contiguous()
        scale = qw.scale.t().contiguous().to(torch.bfloat16)
        self.zero = zero_in_weight_domain(qw).t().contiguous().to(torch.bfloat16)
        self.packed, self.scale = ops.preshuffle_i4(packed, scale)
        err = probe_error(qw, self)
        if not err <= 2e-2:
            raise RuntimeError(f"int4: fbgemm does not reproduce the quantised {self.shape} weight (relative error {err:.3g})")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return fbgemm_mm(x, self.packed, self.scale, self.zero)


def fbgemm_mm(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """``x @ W.T`` for an ``FbgemmWeight``'s tensors (bf16 out, in ``x``'s dtype)."""
    lead = x.shape[:-1]
    y = torch.ops.fbgemm.bf16i4bf16_shuffled(x.reshape(-1, x.shape[-1]).to(torch.bfloat16).contiguous(), packed, scale, zero)
    return y.reshape(*lead, y.shape[-1]).to(x.dtype)


class _Int4LinearBase(torch.nn.Module):
    """What the libraries' linears share: the shape, the group size, the bias (if any, kept in the layer's dtype) and
    the construction from an ``nn.Linear``; a subclass packs ``quantize(weight)`` for its kernel in ``_pack`` and names
    the library in ``library``."""

    library = ""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, group_size: int = GROUP_SIZE):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.group_size = group_size
        self._pack(quantize(weight, group_size))
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().clone(), requires_grad=False)

    def _pack(self, qw: Int4Quant) -> None:
        raise NotImplementedError

    @classmethod
    def from_linear(cls, linear: torch.nn.Module, group_size: int = GROUP_SIZE) -> "_Int4LinearBase":
        return cls(linear.weight.data, getattr(linear, "bias", None), group_size)

    def _with_bias(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 group {self.group_size} ({self.library})"


class GemliteLinear(_Int4LinearBase):
    """A ``nn.Linear`` replaced by its int4 weight through gemlite (``eval.quantization: int4-gemlite``, CUDA): the same
    ``quantize`` numbers as ``Int4Linear``."""

    library = "gemlite"

    def _pack(self, qw: Int4Quant) -> None:
        self.kernel = gemlite_module(qw, torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = self.kernel(x.reshape(-1, x.shape[-1]).to(torch.bfloat16).contiguous())
        return self._with_bias(y.reshape(*lead, y.shape[-1]).to(x.dtype))


class Int4Linear(_Int4LinearBase):
    """A ``nn.Linear`` replaced by its int4 weight through tinygemm (``eval.quantization: int4-tinygemm``): the layer's
    (LoRA-merged) weight quantised once, group-wise."""

    library = "tinygemm"

    def _pack(self, qw: Int4Quant) -> None:
        tw = TinyGemmWeight(qw)
        self.register_buffer("packed", tw.packed)   # buffers: .to() moves them, and they count as the weights read
        self.register_buffer("scales_and_zeros", tw.scales_and_zeros)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._with_bias(tinygemm_mm(x, self.packed, self.group_size, self.scales_and_zeros))


class FbgemmLinear(_Int4LinearBase):
    """A ``nn.Linear`` replaced by its int4 weight through FBGEMM's CUTLASS kernel (``eval.quantization: int4-fbgemm``,
    CUDA sm90): the same ``quantize`` numbers as ``Int4Linear``."""

    library = "fbgemm"

    def _pack(self, qw: Int4Quant) -> None:
        fw = FbgemmWeight(qw)
        self.register_buffer("packed", fw.packed)   # buffers: .to() moves them, and they count as the weights read
        self.register_buffer("scale", fw.scale)
        self.register_buffer("zero", fw.zero)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._with_bias(fbgemm_mm(x, self.packed, self.scale, self.zero))


LIBRARIES = {"tinygemm": Int4Linear, "gemlite": GemliteLinear, "fbgemm": FbgemmLinear}

# Linears of one parent that read the same input: one int4 weight for each group (q/k/v of Llama / Qwen2 attention,
# gate/up of their MLP), as the engine fuses bf16 weights (gistpoc.engine.projections._fuse)
FUSE_GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class Int4Fused(torch.nn.Module):
    """Several linears that read one input, quantised as one int4 weight (their weights stacked along the outputs):
    one kernel call where there were several. Groups run along the inputs, so each row's scale and zero, and with
    them every output, are those of the linear quantised alone. ``kernel`` is the library's int4 linear of the stacked
    weight; ``sizes`` the parts' widths. The parts (``Int4Part``) stand where the linears stood."""

    def __init__(self, kernel: _Int4LinearBase, sizes: list[int]):
        super().__init__()
        self.kernel = kernel
        self.sizes = list(sizes)
        self.bounds = [sum(self.sizes[:i]) for i in range(len(self.sizes) + 1)]
        self._last = None   # (input, its version, output, parts served): see part()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernel(x)

    def part(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Part ``i``'s outputs for ``x``. An eager forward calls q_proj, k_proj, v_proj one after another on the same
        tensor: the first call runs the stacked kernel and keeps its output until every part has taken its slice (or
        another input comes), so the eager forward also runs one kernel, and holds no output beyond the group."""
        try:
            version = x._version
        except RuntimeError:   # inference-mode tensors keep no version counter
            version = None
        last = self._last
        if last is None or last[0]() is not x or last[1] != version or i in last[3]:
            last = self._last = (weakref.ref(x), version, self.kernel(x), set())
        last[3].add(i)
        y = last[2]
        if len(last[3]) == len(self.sizes):
            self._last = None
        return y[..., self.bounds[i]:self.bounds[i + 1]]

    def extra_repr(self) -> str:
        return f"parts={self.sizes}"


class Int4Part(torch.nn.Module):
    """Where a fused linear stood (``q_proj`` ...): its slice of the ``Int4Fused`` outputs. The fused module is
    registered once, on the parent (``<first part>_<last part>_int4``: ``q_proj_v_proj_int4``), not here."""

    def __init__(self, fused: Int4Fused, index: int):
        super().__init__()
        self._fused = [fused]   # a list: not a submodule of the part (its weights would count once per part)
        self.index = index
        self.out_features = fused.sizes[index]
        self.in_features = fused.kernel.in_features

    @property
    def fused(self) -> Int4Fused:
        return self._fused[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused.part(x, self.index)

    def extra_repr(self) -> str:
        return f"part {self.index} of {self.fused.sizes}, int4 ({self.fused.kernel.library})"


def _fusable(parent: torch.nn.Module, names: tuple[str, ...], skip: tuple[str, ...]) -> list | None:
    """The group's linears if all are plain ``nn.Linear`` of one input width, dtype and device, with biases all
    present or all absent, none skipped; None otherwise."""
    mods = [getattr(parent, n, None) for n in names]
    if any(type(m) is not torch.nn.Linear for m in mods) or any(n in skip for n in names):
        return None
    if len({(m.in_features, m.weight.dtype, m.weight.device, m.bias is None) for m in mods}) != 1:
        return None
    return mods


def quantize_linears(model: torch.nn.Module, group_size: int = GROUP_SIZE, skip: tuple[str, ...] = ("lm_head",),
                     library: str = "tinygemm", fuse: bool = True) -> int:
    """Replace every ``nn.Linear`` of ``model`` but those named in ``skip`` (the head stays in the model's dtype, as
    torchao and bitsandbytes leave it) by ``library``'s int4 linear (``Int4Linear``: tinygemm, CPU or CUDA;
    ``GemliteLinear``: gemlite, CUDA; ``FbgemmLinear``: FBGEMM, CUDA sm90); returns how many linears were replaced. With ``fuse``, each group of
    ``FUSE_GROUPS`` becomes one stacked int4 weight (``Int4Fused``, its parts ``Int4Part``): the same numbers, one
    kernel call where there were two or three. Every width must be a multiple of ``group_size``: the error names the
    first layer that is not."""
    if library not in LIBRARIES:
        raise ValueError(f"int4: unknown kernel library {library!r} (one of {sorted(LIBRARIES)})")
    targets = [(name, m) for name, m in model.named_modules() if type(m) is torch.nn.Linear and name.split(".")[-1] not in skip]
    for name, m in targets:
        if m.in_features % group_size:
            raise ValueError(f"eval.int4_group_size {group_size}: layer {name} has in_features {m.in_features}, not a multiple of it")
    cls = LIBRARIES[library]
    done = set()
    if fuse:
        for parent in [m for _, m in model.named_modules()]:
            for names in FUSE_GROUPS:
                mods = _fusable(parent, names, skip)
                if mods is None:
                    continue
                weight = torch.cat([m.weight.data for m in mods])
                bias = torch.cat([m.bias.data for m in mods]) if mods[0].bias is not None else None
                fused = Int4Fused(cls(weight, bias, group_size), [m.out_features for m in mods])
                del weight, bias
                parent.add_module(f"{names[0]}_{names[-1]}_int4", fused)
                for i, (n, m) in enumerate(zip(names, mods)):
                    setattr(parent, n, Int4Part(fused, i))
                    done.add(id(m))
    for name, m in targets:
        if id(m) in done:
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, cls.from_linear(m, group_size))
    return len(targets)
