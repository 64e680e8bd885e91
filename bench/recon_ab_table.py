#!/usr/bin/env python
"""The table of a stage-1 A/B (``bench/recon_density_ab.sh``): each arm's gists, probed by ``bench/gist_content_probe.py``
on held-out and on training documents, with 95 % intervals over documents (bootstrap, documents resampled).

Per method and probe: reconstruction accuracy, reconstruction and continuation "gap closed" ((none - method) /
(none - full), NLL per token, each resample's gap from its documents' mean NLLs), and for each ``--diff A-B`` the
paired difference of two methods on the same documents. With both probes, "memory" is an arm's training-document
reconstruction accuracy minus its held-out one (independent documents: resampled apart).

    python bench/recon_ab_table.py --heldout probe_s1.json --train probe_train_s1.json --diff V-A --diff C-V

Two runs of the same documents in one table: ``--heldout old.json new.json:2`` adds the second file's arms with the tag
appended (V -> V2), so ``--diff V2-V`` pairs the same arm across runs. The files must hold the same documents and the
same ``none`` / ``full`` rows (same base model, same probe), else it stops naming the file.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def read_probe(path: str) -> dict:
    d = json.loads(Path(path).read_text())
    if "per_document" not in d:
        raise SystemExit(f"{path}: no per_document rows (a probe written before bench/gist_content_probe.py kept them)")
    return d


def tagged(method: str, tag: str) -> str:
    """``gist16per512@V_s1`` tagged ``2`` -> ``gist16per512@V2_s1``."""
    if "@" not in method:
        return method
    head, rest = method.split("@", 1)
    name, _, seg = rest.partition("_")
    return f"{head}@{name}{tag}" + (f"_{seg}" if seg else "")


def load_many(specs: list[str]) -> dict[str, list[dict]]:
    """``PATH`` or ``PATH:TAG`` for each file; the first file's documents and none/full rows are the reference."""
    first, merged = None, {}
    for spec in specs:
        path, _, tag = spec.partition(":")
        d = read_probe(path)
        if first is None:
            first = d
        else:
            if d.get("documents") != first.get("documents"):
                raise SystemExit(f"{path}: other documents than {specs[0]}")
            for m in ("none", "full"):
                if any(abs(a[k] - b[k]) > 1e-6 for a, b in zip(d["per_document"][m], first["per_document"][m]) for k in a):
                    raise SystemExit(f"{path}: its '{m}' rows differ from {specs[0]}'s (another base model or probe)")
        for method, rows in d["per_document"].items():
            if method in ("none", "full") and method in merged:
                continue
            name = tagged(method, tag) if tag else method
            if name in merged:
                raise SystemExit(f"{path}: method {name} is already in an earlier file (give this file a :TAG)")
            merged[name] = rows
    return merged


def arm(method: str) -> str:
    """``gist16per512@V_s1`` -> ``V``; ``none`` / ``full`` stay."""
    return method.split("@", 1)[1].split("_", 1)[0] if "@" in method else method


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def gap(per: dict[str, list[dict]], method: str, kind: str, idx: list[int]) -> float:
    m = [mean([per[k][i][f"{kind}_nll"] for i in idx]) for k in ("none", "full", method)]
    return (m[0] - m[2]) / (m[0] - m[1])


def stats(per: dict[str, list[dict]], resamples: int, seed: int) -> dict[str, dict]:
    n = len(per["none"])
    rng = random.Random(seed)
    boots = [[rng.randrange(n) for _ in range(n)] for _ in range(resamples)]
    every = list(range(n))

    def ci(f) -> list[float]:
        vals = sorted(f(b) for b in boots)
        return [f(every), vals[int(0.025 * resamples)], vals[int(0.975 * resamples) - 1]]

    out = {}
    for method, rows in per.items():
        if len(rows) != n:
            raise SystemExit(f"{method}: {len(rows)} documents, none has {n}")
        out[method] = {"recon_acc": ci(lambda b, r=rows: mean([r[i]["reconstruction_acc"] for i in b]))}
        if method not in ("none", "full"):
            for kind in ("reconstruction", "continuation"):
                out[method][f"{kind}_gap"] = ci(lambda b, m=method, k=kind: gap(per, m, k, b))
    out["_boots"], out["_n"] = boots, n
    return out


def fmt(v: list[float], pct: bool) -> str:
    f = (lambda x: f"{100 * x:.0f}") if pct else (lambda x: f"{x:+.2f}" if x < 0 else f"{x:.2f}")
    return f"{f(v[0])}{' %' if pct else ''} [{f(v[1])}, {f(v[2])}]"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--heldout", required=True, nargs="+", help="the probe on held-out (test) documents (PATH or PATH:TAG)")
    p.add_argument("--train", nargs="+", help="the probe on training documents (PATH or PATH:TAG, same order)")
    p.add_argument("--diff", action="append", default=[], help="ARM1-ARM2: paired difference on the same documents")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--out", help="JSON of everything printed")
    args = p.parse_args(argv)
    probes = {"held-out": load_many(args.heldout)} | ({"training": load_many(args.train)} if args.train else {})
    result = {}
    for name, per in probes.items():
        s = stats(per, args.resamples, 0)
        boots, n = s.pop("_boots"), s.pop("_n")
        print(f"\n{name} documents ({n}): reconstruction accuracy, reconstruction gap closed, continuation gap closed")
        print("| method | reconstruction accuracy | reconstruction gap closed | continuation gap closed |\n| --- | --- | --- | --- |")
        for method, v in s.items():
            print(f"| {method} | {fmt(v['recon_acc'], True)} | " + " | ".join(fmt(v[k], False) if k in v else "-" for k in ("reconstruction_gap", "continuation_gap")) + " |")
        by_arm = {arm(m): m for m in per}
        diffs = {}
        for d in args.diff:
            a, b = d.split("-", 1)
            if a not in by_arm or b not in by_arm:
                raise SystemExit(f"--diff {d}: arms here are {sorted(by_arm)}")
            ma, mb = by_arm[a], by_arm[b]

            def paired(idx, key, ma=ma, mb=mb, per=per):
                return mean([per[ma][i][key] - per[mb][i][key] for i in idx])

            every = list(range(n))
            vals = sorted(paired(bt, "reconstruction_acc") for bt in boots)
            diffs[d] = {"recon_acc": [paired(every, "reconstruction_acc"), vals[int(0.025 * len(vals))], vals[int(0.975 * len(vals)) - 1]]}
            for kind in ("reconstruction", "continuation"):
                gaps = sorted(gap(per, ma, kind, bt) - gap(per, mb, kind, bt) for bt in boots)
                diffs[d][f"{kind}_gap"] = [gap(per, ma, kind, every) - gap(per, mb, kind, every),
                                           gaps[int(0.025 * len(gaps))], gaps[int(0.975 * len(gaps)) - 1]]
            print(f"{d} (paired): reconstruction accuracy {fmt(diffs[d]['recon_acc'], True)}, gap closed "
                  f"{fmt(diffs[d]['reconstruction_gap'], False)}; continuation gap closed {fmt(diffs[d]['continuation_gap'], False)}")
        result[name] = {"n": n, "methods": s, "diffs": diffs}
    if args.train:
        held, train = result["held-out"]["methods"], result["training"]["methods"]
        print("\nmemory (training minus held-out: reconstruction accuracy; continuation gap closed; documents resampled apart):")
        rng = random.Random(1)
        ph, pt = probes["held-out"], probes["training"]
        result["memory"] = {}
        for method in held:
            if method not in train or method in ("none", "full"):
                continue
            nh, nt = len(ph[method]), len(pt[method])
            vals = sorted(mean([pt[method][rng.randrange(nt)]["reconstruction_acc"] for _ in range(nt)])
                          - mean([ph[method][rng.randrange(nh)]["reconstruction_acc"] for _ in range(nh)]) for _ in range(args.resamples))
            v = [train[method]["recon_acc"][0] - held[method]["recon_acc"][0], vals[int(0.025 * len(vals))], vals[int(0.975 * len(vals)) - 1]]
            result["memory"][method] = v
            cont = sorted(gap(pt, method, "continuation", [rng.randrange(nt) for _ in range(nt)])
                          - gap(ph, method, "continuation", [rng.randrange(nh) for _ in range(nh)]) for _ in range(args.resamples))
            c = [train[method]["continuation_gap"][0] - held[method]["continuation_gap"][0], cont[int(0.025 * len(cont))],
                 cont[int(0.975 * len(cont)) - 1]]
            result.setdefault("memory_continuation", {})[method] = c
            print(f"  {method}: {fmt(v, True)}; continuation gap closed {fmt(c, False)}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
