"""Method names, parsed in one place: every method the pipeline evaluates and what its name says.

    closed_book, full_context, rag               the baselines (kind "baseline")
    gist{N}                                      gist-N, whole document (kind "gist")
    gist{N}per{C}                                N gists per C-token chunk (gist.layout: chunked; kind "gist")
    rag_gist{N}                                  the top-1 chunk in full after gist-N's cache (kind "hybrid")
    truncate_head{N}, truncate_tail{N},          training-free methods answering from N cached positions
    kv_select{N}, mean_pool{N}, ppl_select{N}    (kind "budget")
    gist{N}_scrambled, gist{N}_otherdoc          the controls: gist-N on the shuffled document / another document
                                                 (kind "control")

``python -m gistpoc.methods NAME...`` prints each as JSON; ``python -m gistpoc.methods --config FILE`` lists the
methods a config evaluates (the rules' list), one per line.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

BASELINES = ("closed_book", "full_context", "rag")
BUDGET_FAMILIES = ("truncate_head", "truncate_tail", "kv_select", "mean_pool", "ppl_select")
CONTROLS = {"scrambled": "token-shuffled document", "otherdoc": "another test document"}
_NAME = re.compile(r"^(?P<family>gist|rag_gist|" + "|".join(BUDGET_FAMILIES) + r")(?P<n>\d+)(?:per(?P<chunk>\d+))?"
                   r"(?:_(?P<control>" + "|".join(CONTROLS) + r"))?$")


@dataclass(frozen=True)
class Method:
    """What a method name says: ``kind`` (baseline | gist | hybrid | budget | control), ``family`` (the name without
    N), ``n`` (gist or budget positions; 0 for baselines), ``control`` (scrambled | otherdoc | ""), ``chunk`` (context
    tokens per N gists in the chunk-wise layout; 0 = N gists for the whole document)."""

    name: str
    kind: str
    family: str
    n: int = 0
    control: str = ""
    chunk: int = 0

    @property
    def uses_gist(self) -> bool:
        """Answers from a trained gist-N checkpoint (gist-N, the hybrid, the controls)."""
        return self.kind in ("gist", "hybrid", "control")

    @property
    def output_dir(self) -> str:
        return f"results/controls/{self.name}" if self.kind == "control" else f"results/eval/{self.name}"


def parse(name: str) -> Method:
    """The Method a name stands for; ValueError naming the forms for anything else."""
    if name in BASELINES:
        return Method(name, "baseline", name)
    m = _NAME.match(name)
    if not m or (m["control"] and m["family"] != "gist") or (m["chunk"] and (m["family"] != "gist" or int(m["chunk"]) < 1)):
        raise ValueError(f"unknown method {name!r}: expected one of {', '.join(BASELINES)}, gist<N>, gist<N>per<C>, rag_gist<N>, "
                         f"<budget method><N> ({', '.join(BUDGET_FAMILIES)}) or gist<N>_<control> ({', '.join(CONTROLS)})")
    family, n, chunk = m["family"], int(m["n"]), int(m["chunk"] or 0)
    if m["control"]:
        return Method(name, "control", family, n, m["control"], chunk)
    kind = {"gist": "gist", "rag_gist": "hybrid"}.get(family, "budget")
    return Method(name, kind, family, n, chunk=chunk)


def gist_n(name: str) -> int:
    """N of a method that answers from a gist-N checkpoint, 0 for any other."""
    m = parse(name)
    return m.n if m.uses_gist else 0


def checkpoint_key(name: str) -> str:
    """The trained checkpoint a gist-answering method reads: ``gist{N}`` for N gists after the whole document,
    ``gist{N}chunked`` for ``gist{N}per{C}`` (one checkpoint trained over every gist.chunked.chunk_tokens)."""
    m = parse(name)
    if not m.uses_gist:
        raise ValueError(f"{name} answers from no gist checkpoint")
    return f"gist{m.n}chunked" if m.chunk else f"gist{m.n}"


def chunked(config: dict) -> list[str]:
    """The chunk-wise methods of a (validated) config: ``gist{N}per{C}`` for every gist.chunked.chunk_tokens C."""
    ch = config["gist"]["chunked"]
    return [f"gist{ch['n']}per{c}" for c in sorted(ch["chunk_tokens"])]


def configured(config: dict) -> list[str]:
    """The methods a (validated) config evaluates, in the report's order: baselines, gist-N, the chunk-wise gists by
    chunk size, the budget methods by N, the hybrids."""
    ev = config["eval"]
    budget = ev["budget"]
    return (list(BASELINES) + [f"gist{n}" for n in sorted(config["gist"]["n_tokens"])] + chunked(config)
            + [f"{m}{n}" for n in sorted(budget["n"]) for m in budget["methods"]]
            + [f"rag_gist{n}" for n in sorted(ev["rag_gist"])])


def main(argv: list[str], load_config) -> None:
    """The command line (gistpoc/methods/__main__.py); ``load_config`` reads and validates a config file."""
    if argv[:1] == ["--config"]:
        print("\n".join(configured(load_config(argv[1]))))
        return
    for name in argv:
        print(json.dumps(asdict(parse(name)) | {"uses_gist": parse(name).uses_gist, "output_dir": parse(name).output_dir}))
