#!/usr/bin/env python
"""Draw the gist attention mask of a real training example (design phase 2: verify the mask visually)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from gistpoc.cli import parser, run  # noqa: E402
from gistpoc.gist.collator import GistDataCollator, layout  # noqa: E402
from gistpoc.gist.template import prompt_template  # noqa: E402
from gistpoc.model import add_gist_tokens, load_tokenizer  # noqa: E402
from gistpoc.train.examples import doc_example, group_by_doc, to_example  # noqa: E402
from gistpoc.utils import atomic_path, read_jsonl  # noqa: E402


def main(args):
    records = read_jsonl(args.dataset)
    tok = load_tokenizer(args.model_ref)
    gist_ids = add_gist_tokens(tok, args.n_gist)
    recs = max(group_by_doc(records).values(), key=len)  # the document with the most questions
    row = doc_example(tok, prompt_template(tok, recs[0]["instruction"]), gist_ids, recs)
    ex = to_example(row)
    mask = GistDataCollator(tok.pad_token_id)([ex])["attention_mask"][0, 0].numpy()
    _, _, _, spans, _ = layout(ex)
    n = mask.shape[0]
    fig, ax = plt.subplots(figsize=(7, 7), dpi=110)
    ax.imshow(mask, cmap="Greys", interpolation="nearest")
    gs, ge = ex.gist_start, ex.gist_end
    ax.add_patch(Rectangle((-0.5, ge - 0.5), gs, n - ge, fill=True, color="tab:red", alpha=0.25))
    ax.axvspan(gs - 0.5, ge - 0.5, color="tab:green", alpha=0.35)
    ax.axhspan(gs - 0.5, ge - 0.5, color="tab:green", alpha=0.15)
    for s, _ in spans:
        ax.axhline(s - 0.5, color="tab:blue", lw=0.6)
    ax.set_title(f"Gist mask of {recs[0]['doc_id']} ({n} tokens, N={args.n_gist}, {len(spans)} questions)", fontsize=9)
    ax.set_xlabel("key position (attended to)")
    ax.set_ylabel("query position")
    ax.legend(handles=[
        Patch(color="black", label="may attend"),
        Patch(color="tab:green", alpha=0.35, label=f"gist span [{gs}, {ge})"),
        Patch(color="tab:red", alpha=0.25, label="blocked: after gist -> context"),
        Patch(color="tab:blue", label="question segment starts"),
    ], loc="upper right", fontsize=7)
    fig.tight_layout()
    with atomic_path(args.out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--dataset", required=True)
    p.add_argument("--model-ref", required=True)
    p.add_argument("--n-gist", type=int, required=True)
    p.add_argument("--out", required=True)
    run(main, p)
