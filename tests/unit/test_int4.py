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



def test_an_int4_model_answers_through_the_engine_as_it_does_eagerly(model_dir, real_text):
    """eval.quantization int4-tinygemm on the real SmolLM2: every decoder linear becomes int4 (the head stays), the
    logits stay close to fp32's without equalling them, and the compiled engine gives the eager path's tokens."""
    from gistpoc.engine import AnswerEngine
    from gistpoc.gist.cache import greedy_generate
    from gistpoc.int4 import Int4Linear
    from gistpoc.model import load_model

    cfg = {"device": "cpu", "dtype": "float32", "attn_implementation": "eager"}
    ref = load_model(cfg, model_dir)
    q = load_model({**cfg, "quantization": "int4-tinygemm", "int4_group_size": 64}, model_dir)
    layers = q.model.config.num_hidden_layers
    assert sum(isinstance(m, Int4Linear) for m in q.model.modules()) == 7 * layers
    assert type(q.model.lm_head) is torch.nn.Linear
    ids = q.tokenizer(real_text[:1200], return_tensors="pt").input_ids[:, :200]
    with torch.no_grad():
        a, b = ref.model(ids).logits[0], q.model(ids).logits[0]
    agree = float((a.argmax(-1) == b.argmax(-1)).float().mean())
    assert 0.6 < agree and not torch.equal(a, b)
    prompt = ids[0, :60].tolist()
    eager = greedy_generate(q.model, prompt, 0, q.eos_ids, 8)
    compiled = AnswerEngine(q.model).generate([prompt], 0, q.eos_ids, 8)[0]
    assert compiled.token_ids == eager.token_ids
    with pytest.raises(ValueError, match=r"eval.int4_group_size 128: layer model.layers.0.self_attn.q_proj has in_features 576"):
        load_model({**cfg, "quantization": "int4-tinygemm"}, model_dir)
    with pytest.raises(ValueError, match="int4-tinygemm .eval.quantization. is for answering"):
        load_model({**cfg, "quantization": "int4-tinygemm"}, model_dir, trainable=True)


def test_int4_gemlite_names_what_it_needs_on_cpu(model_dir):
    """eval.quantization int4-gemlite on a CPU model: a clear error naming the option and the alternative, before any
    layer is replaced (gemlite's kernels are Triton GPU kernels); training with it is refused like int4-tinygemm."""
    from gistpoc.model import load_model

    cfg = {"device": "cpu", "dtype": "float32", "attn_implementation": "eager", "quantization": "int4-gemlite", "int4_group_size": 64}
    with pytest.raises(ValueError, match="int4-gemlite .eval.quantization. runs gemlite's Triton kernels, which need a CUDA device: use int4-tinygemm on CPU"):
        load_model(cfg, model_dir)
    with pytest.raises(ValueError, match="int4-gemlite .eval.quantization. is for answering"):
        load_model(cfg, model_dir, trainable=True)
    with pytest.raises(ValueError, match="unknown kernel library 'marlin'"):
        from gistpoc.int4 import quantize_linears

        quantize_linears(torch.nn.Sequential(torch.nn.Linear(64, 64)), 64, library="marlin")


def _gemlite_reason() -> str:
    if not torch.cuda.is_available():
        return "gemlite's kernels need a CUDA device (run on the GPU machine: bench/paper_scale/README.md)"
    try:
        import gemlite  # noqa: F401
    except ImportError as err:
        return f"gemlite is not installed ({err})"
    return ""


@pytest.mark.skipif(bool(_gemlite_reason()), reason=_gemlite_reason() or "-")
def test_gemlite_and_tinygemm_compute_the_same_int4_model_and_the_engine_keeps_its_tokens():
    """On CUDA: a tiny bf16 Llama quantised by both libraries from the same numbers gives nearly equal logits (both
    compute (q - zero) * scale; they differ by bf16 summation order) that differ from the bf16 model's, and the
    compiled engine (static cache, CUDA graphs) answers with the eager path's greedy tokens through gemlite."""
    import copy

    from transformers import AutoModelForCausalLM, LlamaConfig

    from gistpoc.engine import AnswerEngine
    from gistpoc.gist.cache import greedy_generate
    from gistpoc.int4 import GemliteLinear, Int4Linear, quantize_linears

    cfg = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.05)
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    tiny, gem = copy.deepcopy(base), copy.deepcopy(base)
    assert quantize_linears(tiny, 128, library="tinygemm") == quantize_linears(gem, 128, library="gemlite") == 14
    assert sum(isinstance(m, GemliteLinear) for m in gem.modules()) == 14 and sum(isinstance(m, Int4Linear) for m in tiny.modules()) == 14
    ids = torch.randint(5, 500, (2, 48), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    with torch.no_grad():
        lb, lt, lg = (m(ids).logits.float() for m in (base, tiny, gem))
    assert float((lg - lt).norm() / lt.norm()) < 2e-2 < float((lg - lb).norm() / lb.norm())
    for rows in (1, 16, 64):   # gemlite's GEMV, split-K and GEMM paths
        x = torch.randn(rows, 256, device="cuda", dtype=torch.bfloat16)
        a, b = gem.model.layers[0].mlp.up_proj(x).float(), tiny.model.layers[0].mlp.up_proj(x).float()
        assert float((a - b).norm() / b.norm()) < 2e-2, rows
    prompt = ids[0, :40].tolist()
    eager = greedy_generate(gem, prompt, 0, [], 12)
    compiled = AnswerEngine(gem).generate([prompt], 0, [], 12)[0]
    assert compiled.token_ids == eager.token_ids
