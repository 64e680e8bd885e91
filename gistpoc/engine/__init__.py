"""The compiled answer engine (``eval.engine: compiled``): a static KV cache, batched prompts, CUDA graphs.

The eager path (``gistpoc.gist.cache.greedy_generate``) runs the Hugging Face forward once per token with a
growing ``DynamicCache``: at 25 cached gist positions and a 32-token question nearly all of its time goes to Python
and kernel launches. This engine runs the same decoder (the model's own embedding, norms, projections, MLPs,
rotary embedding and head: LoRA, bitsandbytes 4-bit or int4 linears included) over a cache of fixed size:

- slots vs positions: every row owns ``S`` cache slots; a token is written to a slot (``slots``) and rotated at
  its own position (``pos``), so a gist cache made at positions ``gist_start..gist_end-1`` is copied into slots
  ``0..N-1`` and a question continues at position ``gist_end`` from slot ``N``, exactly as the eager path does;
- a batch of prompts (e.g. all questions of one document against its one gist cache) is right-padded to one
  length; ``valid`` marks the slots that hold real tokens, and a query at slot ``s`` sees the valid slots
  ``<= s``: padding is never attended to, so each row's tokens equal its unbatched greedy tokens;
- on CUDA the prompt pass (up to ``graph_max_tokens``, padded to a bucket) and the one-token decode step are
  captured as CUDA graphs (``gistpoc.engine.graphs``) and replayed (one launch per pass instead of hundreds);
  longer prompts (full context) run the same function uncaptured. On CPU nothing is captured: the same function runs directly.

- with Triton on CUDA (``fast_kernels``, the default there) a pass of at most ``kernels.MAX_ROWS`` tokens (a gist
  question, a decode step) runs ``_forward_short`` (``gistpoc.engine.short_pass``): the same layer in ~14 kernels
  instead of ~43 (``gistpoc.kernels``: residual add + RMSNorm, rotary embedding + cache write, SiLU * up). The projections
  stay with cuBLAS (bf16) or with the modules themselves (bitsandbytes NF4, LoRA layers): measured on an H200 at
  these sizes both beat a Triton GEMM (``bench/gemm_kernels.py``, measured by ``bench/engine_kernels.py``).

Llama and Qwen2 (q/k/v biases live in the projections) share this path. The parts: ``core`` (the cache, the PyTorch
layer, generation), ``graphs`` (capture and replay), ``short_pass`` (the fused-kernel pass), ``projections`` (fused and
NF4 projections, the norms' weights).
"""

from gistpoc.engine.core import AnswerEngine
from gistpoc.engine.projections import _Proj
from gistpoc.engine.short_pass import fast_kernels_wanted

__all__ = ["AnswerEngine", "_Proj", "fast_kernels_wanted"]
