#!/usr/bin/env python
"""Attention of answer tokens over the gist tokens for one real test example (trained checkpoint).

The example is the passkey question of the shortest test document (the full attention maps of every layer
are kept in memory: at 8k tokens they would not fit a CPU machine). The last column sums the attention on
the whole context: it is exactly 0 because of the gist mask.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from gistpoc.cli import json_arg, parser, run  # noqa: E402
from gistpoc.gist.cache import answer_from_cache, compress_context  # noqa: E402
from gistpoc.gist.collator import GistDataCollator, GistExample, forward_masked  # noqa: E402
from gistpoc.gist.template import encode_prefix, encode_question, prompt_template  # noqa: E402
from gistpoc.model import load_model  # noqa: E402
from gistpoc.utils import atomic_path, read_jsonl  # noqa: E402


def main(args):
    records = read_jsonl(args.dataset)
    rec = min((r for r in records if r["qtype"] == "passkey"), key=lambda r: r["context_tokens"], default=records[0])
    loaded = load_model({**args.model, "attn_implementation": "eager"}, args.model_ref, n_gist=args.n_gist, adapter_dir=args.checkpoint)
    tok, model = loaded.tokenizer, loaded.model
    tpl = prompt_template(tok, args.instruction)
    enc = encode_prefix(tok, tpl, rec["context"], loaded.gist_ids)
    q_ids = encode_question(tok, tpl, rec["question"])
    cache = compress_context(model, enc.prefix_ids, enc.gist_start, enc.gist_end)
    answer = answer_from_cache(model, cache, q_ids, loaded.eos_ids, args.max_new_tokens).token_ids or [loaded.eos_ids[0]]
    batch = GistDataCollator(tok.pad_token_id)([GistExample(enc.prefix_ids, enc.gist_start, enc.gist_end, [(q_ids, answer)])])
    with torch.no_grad():
        att = forward_masked(model, batch, output_attentions=True).attentions
    a0 = len(enc.prefix_ids) + len(q_ids)
    rows = slice(a0 - 1, a0 - 1 + len(answer))  # the positions that predict each answer token
    last = torch.stack([layer[0] for layer in att]).mean(dim=(0, 1))  # mean over layers and heads
    gist_part = last[rows, enc.gist_start : enc.gist_end]
    context_part = last[rows, : enc.gist_start].sum(-1, keepdim=True)
    data = torch.cat([gist_part, context_part], dim=1).float().cpu().numpy()
    labels = [f"G{i}" for i in range(args.n_gist)] + ["context (sum)"]
    ylabels = [repr(tok.decode([t]))[1:-1][:12] for t in answer]
    fig, ax = plt.subplots(figsize=(min(14, 3 + 0.35 * len(labels)), 1.5 + 0.3 * len(answer)))
    sns.heatmap(data, ax=ax, cmap="magma", xticklabels=labels, yticklabels=ylabels, cbar_kws={"label": "attention (mean over layers, heads)"})
    ax.set_title(f"gist-{args.n_gist}: answer tokens over gist tokens\n{rec['doc_id']}: {rec['question'][:70]}", fontsize=9)
    ax.set_xlabel("key")
    ax.set_ylabel("generated answer token")
    fig.tight_layout()
    with atomic_path(args.out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--model", type=json_arg, required=True)
    p.add_argument("--model-ref", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--n-gist", type=int, required=True)
    p.add_argument("--instruction", required=True)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--out", required=True)
    run(main, p)
