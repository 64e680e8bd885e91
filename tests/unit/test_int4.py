"""gistpoc.int4: group-wise affine int4 (issue 29) and PyTorch's int4 kernel on CPU."""

import pytest
import torch

from gistpoc.int4 import GROUP_SIZE, TinyGemmWeight, dequantize, quantize


def _weight(out_f=192, in_f=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=g) * 0.02
    w[5, :GROUP_SIZE] += 0.5  # one group with an offset: the zero point must carry it
    return w


def test_quantize_stays_within_half_a_step_of_each_weight():
    w = _weight()
    qw = quantize(w)
    assert qw.q.dtype == torch.uint8 and int(qw.q.min()) == 0 and int(qw.q.max()) == 15
    assert qw.scale.shape == qw.zero.shape == (192, 512 // GROUP_SIZE)
    err = (dequantize(qw) - w).abs().reshape(192, -1, GROUP_SIZE)
    step = qw.scale.float()[..., None]
    assert bool((err <= 0.5 * step * 1.02 + 1e-6).all())   # rounding to the nearest level (bf16 scale and zero: 2 %)
    assert qw.nbytes() == 192 * 512 // 2 + 4 * 192 * 4


def test_quantize_names_the_shape_it_cannot_group():
    with pytest.raises(ValueError, match="in_features 200 is not a multiple of group_size 128"):
        quantize(torch.randn(4, 200))


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_tinygemm_on_cpu_computes_with_the_dequantised_weight(rows):
    w = _weight()
    qw = quantize(w)
    x = torch.randn(2, rows, 512, generator=torch.Generator().manual_seed(1))
    y = TinyGemmWeight(qw)(x)
    want = x @ dequantize(qw).T
    assert y.shape == (2, rows, 192)
    assert float((y - want).norm() / want.norm()) < 2e-3   # the kernel's bf16 scales, fp32 sums
    assert float((y - x @ w.T).norm() / (x @ w.T).norm()) > 1e-2   # ... and not the unquantised weight

