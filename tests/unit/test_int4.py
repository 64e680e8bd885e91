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
    from gistpoc.int4 import Int4Linear, Int4Part
    from gistpoc.model import load_model

    cfg = {"device": "cpu", "dtype": "float32", "attn_implementation": "eager"}
    ref = load_model(cfg, model_dir)
    q = load_model({**cfg, "quantization": "int4-tinygemm", "int4_group_size": 64}, model_dir)
    layers = q.model.config.num_hidden_layers
    # seven linears a layer, four int4 weights: q/k/v and gate/up each stacked into one (Int4Fused)
    assert sum(isinstance(m, Int4Linear) for m in q.model.modules()) == 4 * layers
    assert sum(isinstance(m, Int4Part) for m in q.model.modules()) == 5 * layers
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


def _tiny_llama(dtype=torch.float32, device="cpu"):
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.05)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa").to(device).eval()


def test_fused_int4_groups_compute_what_the_linears_quantised_alone_compute():
    """q/k/v and gate/up stacked into one int4 weight each: the model's logits equal those of the same linears
    quantised one by one (groups run along the inputs, so every row keeps its scale and zero), an eager forward runs
    one stacked kernel per group and layer and keeps no output after it, and the engine calls that kernel once."""
    import copy

    from gistpoc.engine import AnswerEngine
    from gistpoc.gist.cache import greedy_generate
    from gistpoc.int4 import Int4Fused, Int4Linear, Int4Part, quantize_linears

    base = _tiny_llama()
    sep, fused = copy.deepcopy(base), copy.deepcopy(base)
    assert quantize_linears(sep, 128, fuse=False) == quantize_linears(fused, 128) == 14
    assert sum(type(m) is Int4Linear for m in sep.modules()) == 14
    groups = [m for m in fused.modules() if isinstance(m, Int4Fused)]
    assert len(groups) == 4 and sum(type(m) is Int4Linear for m in fused.modules()) == 8
    attn = fused.model.layers[0].self_attn
    assert type(attn.q_proj) is Int4Part and attn.q_proj.fused is attn.q_proj_v_proj_int4 and attn.v_proj.index == 2
    assert attn.q_proj_v_proj_int4.sizes == [256, 128, 128]
    # the weights are held once: the parts do not register the stacked module
    assert sum(p.numel() for p in fused.buffers()) == sum(p.numel() for p in sep.buffers())
    calls = []
    for g in groups:
        g.kernel.register_forward_hook(lambda mod, inp, out: calls.append(mod))
    ids = torch.randint(5, 500, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = sep(ids).logits, fused(ids).logits
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4) and not torch.equal(a, base(ids).logits)
    assert len(calls) == 4 and all(g._last is None for g in groups)   # one kernel call per group, nothing held
    engine = AnswerEngine(fused)
    assert engine.qkv[0][0] is attn.q_proj_v_proj_int4 and engine.gate_up[1][2] == [512, 512]
    prompt = ids[0, :24].tolist()
    assert engine.generate([prompt], 0, [], 6)[0].token_ids == greedy_generate(fused, prompt, 0, [], 6).token_ids
    # an input changed in place between two parts is not served from the kept output
    x = torch.randn(1, 3, 256)
    with torch.no_grad():
        q1 = attn.q_proj(x).clone()
        x.mul_(2)
        k2 = attn.k_proj(x)
        assert torch.allclose(k2, attn.q_proj_v_proj_int4(x)[..., 256:384], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(q1, attn.q_proj(x))


@pytest.mark.parametrize("library,kernels", [("gemlite", "gemlite's Triton kernels, which need a CUDA device"),
                                              ("fbgemm", "FBGEMM's CUTLASS kernels, which need a CUDA .sm90. device")])
def test_int4_gpu_libraries_name_what_they_need_on_cpu(model_dir, library, kernels):
    """eval.quantization int4-gemlite / int4-fbgemm on a CPU model: a clear error naming the option and the
    alternative, before any layer is replaced (GPU kernels only); training with it is refused like int4-tinygemm."""
    from gistpoc.model import load_model

    cfg = {"device": "cpu", "dtype": "float32", "attn_implementation": "eager", "quantization": f"int4-{library}", "int4_group_size": 64}
    with pytest.raises(ValueError, match=f"int4-{library} .eval.quantization. runs {kernels}: use int4-tinygemm on CPU"):
        load_model(cfg, model_dir)
    with pytest.raises(ValueError, match=f"int4-{library} .eval.quantization. is for answering"):
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
    # 14 linears, 8 int4 weights: q/k/v and gate/up stacked (gistpoc.int4.Int4Fused)
    assert sum(isinstance(m, GemliteLinear) for m in gem.modules()) == 8 and sum(isinstance(m, Int4Linear) for m in tiny.modules()) == 8
    ids = torch.randint(5, 500, (2, 48), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    with torch.no_grad():
        lb, lt, lg = (m(ids).logits.float() for m in (base, tiny, gem))
    assert float((lg - lt).norm() / lt.norm()) < 2e-2 < float((lg - lb).norm() / lb.norm())
    sep = copy.deepcopy(base)   # the same linears through gemlite one by one: the stacked weights compute the same
    quantize_linears(sep, 128, library="gemlite", fuse=False)
    with torch.no_grad():
        ls = sep(ids).logits.float()
    assert float((lg - ls).norm() / ls.norm()) < 1e-2
    for rows in (1, 16, 64):   # gemlite's GEMV, split-K and GEMM paths
        x = torch.randn(rows, 256, device="cuda", dtype=torch.bfloat16)
        a, b = gem.model.layers[0].mlp.up_proj(x).float(), tiny.model.layers[0].mlp.up_proj(x).float()
        assert float((a - b).norm() / b.norm()) < 2e-2, rows
    prompt = ids[0, :40].tolist()
    eager = greedy_generate(gem, prompt, 0, [], 12)
    compiled = AnswerEngine(gem).generate([prompt], 0, [], 12)[0]
    assert compiled.token_ids == eager.token_ids


def _fbgemm_reason() -> str:
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (9, 0):
        return "FBGEMM's int4 CUTLASS kernels need a CUDA sm90 device (run on the GPU machine: bench/paper_scale/README.md)"
    from gistpoc.int4 import fbgemm_ops

    try:
        fbgemm_ops()
    except ImportError as err:
        return str(err)
    return ""


@pytest.mark.skipif(bool(_fbgemm_reason()), reason=_fbgemm_reason() or "-")
def test_fbgemm_computes_the_tinygemm_int4_model_and_the_engine_keeps_its_tokens():
    """On an sm90 GPU: a tiny bf16 Llama quantised for FBGEMM and for tinygemm from the same numbers gives nearly equal
    logits, unlike the bf16 model's; stacked and unstacked FBGEMM weights agree; every row count the kernel dispatches
    on (1, 16, 32, 64, 128) computes the de-quantised weight's product; the compiled engine (CUDA graphs) answers with
    the eager path's greedy tokens through FBGEMM."""
    import copy

    from transformers import AutoModelForCausalLM, LlamaConfig

    from gistpoc.engine import AnswerEngine
    from gistpoc.gist.cache import greedy_generate
    from gistpoc.int4 import FbgemmLinear, FbgemmWeight, dequantize, quantize, quantize_linears

    cfg = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.05)
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    tiny, fb, sep = copy.deepcopy(base), copy.deepcopy(base), copy.deepcopy(base)
    assert quantize_linears(tiny, 128, library="tinygemm") == quantize_linears(fb, 128, library="fbgemm") == 14
    assert sum(isinstance(m, FbgemmLinear) for m in fb.modules()) == 8
    quantize_linears(sep, 128, library="fbgemm", fuse=False)
    ids = torch.randint(5, 500, (2, 48), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    with torch.no_grad():
        lb, lt, lf, ls = (m(ids).logits.float() for m in (base, tiny, fb, sep))
    assert float((lf - lt).norm() / lt.norm()) < 2e-2 < float((lf - lb).norm() / lb.norm())
    assert float((lf - ls).norm() / ls.norm()) < 1e-2
    w = torch.randn(1024, 512, device="cuda", dtype=torch.bfloat16) * 0.02
    qw = quantize(w)
    fw = FbgemmWeight(qw)
    for rows in (1, 16, 32, 64, 128):
        x = torch.randn(rows, 512, device="cuda", dtype=torch.bfloat16)
        want = x.float() @ dequantize(qw).T
        assert float((fw(x).float() - want).norm() / want.norm()) < 1e-2, rows
    prompt = ids[0, :40].tolist()
    eager = greedy_generate(fb, prompt, 0, [], 12)
    compiled = AnswerEngine(fb).generate([prompt], 0, [], 12)[0]
    assert compiled.token_ids == eager.token_ids
