"""gistpoc.kernels (the engine's short-pass Triton kernels) compute what the PyTorch code they replace computes.

Without a GPU the kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1), which has no
bf16: the checks run in fp16 there (same kernels, same rounding points); bench/engine_kernels.py repeats them in
bf16 on the GPU. Skipped where Triton is not installed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

triton = pytest.importorskip("triton")

from gistpoc import kernels  # noqa: E402
from gistpoc.engine import AnswerEngine  # noqa: E402
from gistpoc.gist.cache import answer_from_cache, compress_context, greedy_generate  # noqa: E402
from gistpoc.model import rotate_half  # noqa: E402
from tests.unit.test_engine import _tiny as tiny_model  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
DT = torch.bfloat16 if DEV == "cuda" else torch.float16


def rel(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("m,n,k,split", [(1, 96, 256, 1), (5, 64, 512, 2), (33, 80, 256, 4), (64, 48, 128, 1)])
def test_linear_matches_a_float_matmul(m, n, k, split, bench_module):
    """bench/gemm_kernels.py's split-K GEMM (measured, not used by the engine)."""
    gemm = bench_module("gemm_kernels")
    g = torch.Generator().manual_seed(m * n)
    x = torch.randn(m, k, generator=g).to(DEV, DT)
    w = (torch.randn(n, k, generator=g) / k**0.5).to(DEV, DT)
    b = torch.randn(n, generator=g).to(DEV, DT)
    ref = F.linear(x.float(), w.float(), b.float())
    for bias in (b, None):
        y = gemm.linear(x, w, bias, config=(32, 64, split, 4, 2))
        assert y.shape == (m, n) and y.dtype == DT and torch.isfinite(y).all()
        assert rel(y, ref if bias is not None else ref - b.float()) < 2e-3
    # a 3-D input keeps its leading shape; rows beyond the limit are refused, not silently wrong
    assert gemm.linear(x[None], w, b, config=(32, 64, split, 4, 2)).shape == (1, m, n)
    with pytest.raises(ValueError, match="at most"):
        gemm.linear(torch.zeros(kernels.MAX_ROWS + 1, k, device=DEV, dtype=DT), w)
    with pytest.raises(ValueError, match="features"):
        gemm.linear(x[:, :-16], w)


def _nf4(n: int, k: int, seed: int):
    import bitsandbytes.functional as bnbf

    w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed)).to(torch.bfloat16)
    q, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)

    class Params:  # what Linear4bit.weight offers: .data and .quant_state
        data, quant_state = q, state

    return Params, bnbf.dequantize_4bit(q, state)


def test_nf4_weight_is_bitsandbytes_layout_and_linear_reads_it(bench_module):
    params, dense = _nf4(96, 512, 0)
    w = kernels.Nf4Weight.from_bnb(params)
    assert w.shape == (96, 512) and w.packed.dtype == torch.uint8 and w.absmax.shape == (96, 8)
    assert torch.equal(w.dequantize(), dense)  # bit for bit the matrix bitsandbytes multiplies by
    params2, dense2 = _nf4(32, 512, 1)
    fused = kernels.Nf4Weight.cat([w, kernels.Nf4Weight.from_bnb(params2)])
    assert torch.equal(fused.dequantize(), torch.cat([dense, dense2]))
    x = torch.randn(17, 512, generator=torch.Generator().manual_seed(2)).to(DT)
    for split in (1, 2):
        fw = kernels.Nf4Weight(fused.packed.to(DEV), fused.absmax.to(DEV), fused.code.to(DEV), fused.blocksize)
        y = bench_module("gemm_kernels").linear(x.to(DEV), fw, None, config=(32, 128, split, 4, 2))
        # fp16 in the interpreter rounds the de-quantised weight a little finer than bf16 does
        assert rel(y, x.float().to(DEV) @ fused.dequantize().float().to(DEV).T) < 4e-3


def test_add_rms_norm_equals_the_llama_norm():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    g = torch.Generator().manual_seed(3)
    norm = LlamaRMSNorm(64, eps=1e-5).to(DEV, DT)
    norm.weight.data = torch.randn(64, generator=g).to(DEV, DT)
    x, r = (torch.randn(2, 5, 64, generator=g).to(DEV, DT) for _ in range(2))
    s, out = kernels.add_rms_norm(x, r, norm.weight, norm.variance_epsilon)
    assert torch.equal(s, x + r)
    torch.testing.assert_close(out, norm(x + r), atol=0, rtol=2**-7)  # rsqrt may differ by one ulp
    same, out2 = kernels.add_rms_norm(x, None, norm.weight, norm.variance_epsilon)
    assert same is x or torch.equal(same, x)
    torch.testing.assert_close(out2, norm(x), atol=0, rtol=2**-7)


def test_silu_mul_and_rope_to_cache_equal_pytorch():
    g = torch.Generator().manual_seed(4)
    gu = torch.randn(3, 5, 2 * 96, generator=g).to(DEV, DT)
    assert torch.equal(kernels.silu_mul(gu), F.silu(gu[..., :96]) * gu[..., 96:])

    b, t, h, kv, d = 2, 3, 4, 2, 16
    qkv = torch.randn(b, t, (h + 2 * kv) * d, generator=g).to(DEV, DT)
    cos, sin = (torch.randn(b, t, d, generator=g).to(DEV, DT) for _ in range(2))
    kc = torch.full((3, kv, 8, d), 7.0, device=DEV, dtype=DT)
    vc = kc.clone()
    slots = torch.tensor([2, 3, 4], device=DEV)
    q = kernels.rope_to_cache(qkv, cos, sin, slots, kc, vc, h, kv, d)
    qq, kk, vv = qkv.split([h * d, kv * d, kv * d], -1)
    qq, kk, vv = (z.view(b, t, -1, d).transpose(1, 2) for z in (qq, kk, vv))
    c, s = cos[:, None], sin[:, None]
    for got, z in ((q, qq), (kc[:b, :, 2:5], kk)):
        want = z * c + rotate_half(z) * s
        if DEV == "cpu":  # the interpreter rounds exactly where PyTorch does
            assert torch.equal(got, want)
        else:  # on the GPU the kernel's sum may differ by a rounding step of its larger product (measured: <= 2)
            big = torch.maximum((z * c).abs(), (rotate_half(z) * s).abs()).float()
            assert ((got.float() - want.float()).abs() <= 2 * torch.exp2(torch.floor(torch.log2(big.clamp(min=1e-30))) - 7)).all()
    assert torch.equal(vc[:b, :, 2:5], vv)
    untouched = torch.ones_like(kc, dtype=torch.bool)
    untouched[:b, :, 2:5] = False
    assert (kc[untouched] == 7).all() and (vc[untouched] == 7).all()  # no other slot or row written


def _tiny(arch: str):
    return tiny_model(arch, DT, "sdpa", DEV)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_engine_short_passes_through_the_kernels_give_the_pytorch_answers(arch):
    """The engine with the kernels (gist questions in one batch, decode steps) against the same engine without them
    and against the eager loop: the same greedy tokens."""
    model = _tiny(arch)
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(5, 290, (40,), generator=g).tolist()
    cache = compress_context(model, prefix, 30, 40)
    questions = [torch.randint(5, 290, (n,), generator=g).tolist() for n in (3, 9, 6)]
    fast = AnswerEngine(model, max_batch=3, fast_kernels=True)
    plain = AnswerEngine(model, max_batch=3, fast_kernels=False)
    assert fast.short is not None and plain.short is None
    calls = []
    orig = fast._forward_short
    fast._forward_short = lambda *a: calls.append(a[0].shape) or orig(*a)
    got = fast.answer_from_cache(cache, questions, [], 6)
    assert calls and all(s[0] * s[1] <= kernels.MAX_ROWS for s in calls)  # prompt pass and decode steps took it
    want = plain.answer_from_cache(cache, questions, [], 6)
    eager = [answer_from_cache(model, cache, q, [], 6) for q in questions]
    for a, b, e in zip(got, want, eager):
        assert a.token_ids == b.token_ids == e.token_ids
        assert rel(a.first_logits, b.first_logits) < 1e-2
    # a long prompt still takes the PyTorch pass; its decode steps take the kernels
    calls.clear()
    long_answer = fast.generate([prefix + prefix], 0, [], 4)[0]
    assert long_answer.token_ids == greedy_generate(model, prefix + prefix, 0, [], 4).token_ids
    assert calls and all(s == (1, 1) for s in calls)


def test_engine_short_pass_calls_lora_layers_as_modules():
    """A LoRA-wrapped model (the NF4 paper setup keeps its adapter unmerged): the projections the kernels do not
    read are called as modules inside the fused pass; the answers stay the PyTorch path's."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_tiny("llama"), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False))
    model.eval()
    g = torch.Generator().manual_seed(5)
    prefix = torch.randint(5, 290, (30,), generator=g).tolist()
    cache = compress_context(model, prefix, 20, 30)
    questions = [torch.randint(5, 290, (n,), generator=g).tolist() for n in (4, 7)]
    fast = AnswerEngine(model, max_batch=2, fast_kernels=True)
    assert fast.short is not None and fast.qkv[0] is None  # q/v are LoRA layers: no fused weight
    got = fast.answer_from_cache(cache, questions, [], 5)
    want = AnswerEngine(model, max_batch=2, fast_kernels=False).answer_from_cache(cache, questions, [], 5)
    assert [a.token_ids for a in got] == [b.token_ids for b in want]


def test_nf4_projection_with_its_absmax_dequantised_once_equals_the_module():
    """The short pass calls bitsandbytes NF4 linears with a flat quantisation state (absmax de-quantised once at
    engine start): the same weights, so the same outputs as the module, for one row and for many."""
    import bitsandbytes as bnb

    from gistpoc.engine import _Proj

    g = torch.Generator().manual_seed(6)
    lin = bnb.nn.Linear4bit(256, 96, bias=True, compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4")
    lin.weight = bnb.nn.Params4bit(torch.randn(96, 256, generator=g).to(torch.bfloat16), requires_grad=False, quant_type="nf4",
                                   compress_statistics=True, blocksize=64)
    lin.bias = torch.nn.Parameter(torch.randn(96, generator=g).to(torch.bfloat16))
    lin = lin.to("cpu")
    proj = _Proj([lin])
    assert proj.weight is None and proj.flat[0] is not None and not proj.flat[0].nested
    dense = bnb.functional.dequantize_4bit(lin.weight.data, lin.weight.quant_state)
    for rows in (1, 7):
        x = torch.randn(1, rows, 256, generator=g).to(torch.bfloat16)
        torch.testing.assert_close(proj(x), F.linear(x, dense, lin.bias), rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(proj(x), lin(x), rtol=2e-2, atol=2e-2)
    # the flat state de-quantises to the very matrix the double-quantised one does; a second engine shares it
    assert torch.equal(bnb.functional.dequantize_4bit(lin.weight.data, proj.flat[0]), dense)
    assert _Proj([lin]).flat[0] is proj.flat[0]


def test_real_smollm2_gist_answers_are_the_same_through_the_kernels(tokenizer, gist_model, real_text):
    """The real SmolLM2 weights (GQA 9/3, gist rows as the pipeline adds them; the first 4 of its 30 layers, so the interpreter
    finishes in CI time) in fp16 answering from a real gist cache: the fused kernels give the PyTorch path's greedy
    tokens (the same check the GPU benchmark makes in bf16)."""
    import copy

    from gistpoc.gist.template import encode_prefix, encode_question, prompt_template

    model = copy.deepcopy(gist_model.model).to(DEV, DT)
    model.model.layers = model.model.layers[:4]
    model.config.num_hidden_layers = 4
    template = prompt_template(tokenizer, "Answer from the compressed text.")
    enc = encode_prefix(tokenizer, template, real_text[:1200], gist_model.gist_ids)
    cache = compress_context(model, enc.prefix_ids, enc.gist_start, enc.gist_end)
    questions = [encode_question(tokenizer, template, q) for q in ("Who is the article about?", "What is the pass key?")]
    assert all(len(q) <= 32 for q in questions)  # two rows of <= 32 tokens: the prompt pass is a short pass
    fast = AnswerEngine(model, max_batch=2, fast_kernels=True)
    calls = []
    orig = fast._forward_short
    fast._forward_short = lambda *a: calls.append(a[0].shape) or orig(*a)
    got = fast.answer_from_cache(cache, questions, gist_model.eos_ids, 4)
    assert calls[0][0] == 2 and calls[0][1] >= max(map(len, questions)) and calls[-1] == (2, 1)
    want = AnswerEngine(model, max_batch=2, fast_kernels=False).answer_from_cache(cache, questions, gist_model.eos_ids, 4)
    assert [a.token_ids for a in got] == [b.token_ids for b in want] and all(a.token_ids for a in got)
    for a, b in zip(got, want):
        assert rel(a.first_logits, b.first_logits) < 1e-2


def test_a_lora_layer_over_nf4_is_called_as_the_module_not_as_bare_nf4():
    """PEFT's LoRA layer over a bitsandbytes NF4 linear is also named Linear4bit and hands out the base weight with its
    quantisation state. The short pass must call it (base NF4 product plus the LoRA product), not bitsandbytes' matmul
    on the base weight alone: the gist adapter over an NF4 model (the design's format, the adapter left unmerged)
    answered through the compiled engine on the GPU failed here (session 31), and had it not failed it would have
    dropped the adapter."""
    import bitsandbytes as bnb
    from peft import LoraConfig, get_peft_model

    from gistpoc.engine import _Proj

    g = torch.Generator().manual_seed(7)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = bnb.nn.Linear4bit(256, 64, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
            self.q_proj.weight = bnb.nn.Params4bit(torch.randn(64, 256, generator=g).to(torch.bfloat16), requires_grad=False,
                                                   quant_type="nf4", compress_statistics=True, blocksize=64)

        def forward(self, x):
            return self.q_proj(x)

    block = Block().to("cpu")
    block.is_loaded_in_4bit = True   # what transformers sets on an NF4 model: PEFT then wraps with its bnb layer
    bare = _Proj([block.q_proj])
    assert bare.flat[0] is not None   # the bitsandbytes layer itself takes the flat-state path
    model = get_peft_model(block, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], init_lora_weights=False))
    lora = model.base_model.model.q_proj
    assert type(lora).__name__ == "Linear4bit" and hasattr(lora.weight, "quant_state")
    proj = _Proj([lora])
    assert proj.flat[0] is None
    x = torch.randn(1, 3, 256, generator=g).to(torch.bfloat16)
    with torch.no_grad():
        want, base = lora(x), bare(x)
        got = proj(x)
    assert (want.float() - base.float()).abs().max() > 0.1   # the adapter changes the output
    torch.testing.assert_close(got, want)


def test_an_nf4_model_with_an_unmerged_lora_answers_the_same_through_the_compiled_engine(tmp_path):
    """On a CUDA GPU with bitsandbytes: the paper setup's shape of model, NF4 weights with a LoRA adapter left unmerged
    (PEFT's 4-bit LoRA layers), answers through the compiled engine (short passes, CUDA graphs) with the eager loop's
    greedy tokens, and the adapter counts (its tokens differ from the adapter-disabled model's). Session 31's NF4 gist
    pass failed here before the `_is_nf4` fix."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA (bitsandbytes' NF4 kernels)")
    pytest.importorskip("bitsandbytes")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig

    from gistpoc.engine import AnswerEngine
    from gistpoc.gist.cache import greedy_generate

    cfg = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.05)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).save_pretrained(tmp_path / "base")
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.bfloat16)
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base", quantization_config=q, dtype=torch.bfloat16,
                                                attn_implementation="sdpa", device_map={"": 0})
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                            init_lora_weights=False)).eval()
    lora = model.base_model.model.model.layers[0].self_attn.q_proj
    assert type(lora).__name__ == "Linear4bit" and type(lora).__module__.startswith("peft.")
    prompt = torch.randint(5, 500, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    with torch.no_grad():
        eager = greedy_generate(model, prompt, 0, [], 12)
        with model.disable_adapter():
            plain = greedy_generate(model, prompt, 0, [], 12)
        compiled = AnswerEngine(model).generate([prompt], 0, [], 12)[0]
    assert eager.token_ids != plain.token_ids   # the adapter changes the answer
    assert compiled.token_ids == eager.token_ids
