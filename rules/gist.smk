# Phases 2-3 of the design: the gist mask, and one trained LoRA checkpoint per gist count N.


rule plot_mask:
    output:
        "results/figures/attention_mask.png",
    input:
        dataset=get_dataset("train", N_GIST[0]),
        model="results/model/base/model_ref.json",
        code=lib("gist", "train"),
    params:
        n=N_GIST[0],
    log:
        "logs/plot_mask/plot_mask.log",
    shell:
        "python scripts/plot_mask.py --dataset {input.dataset} --model-ref {input.model} --n-gist {params.n} "
        "--out {output} --log {log}"


rule train_gist:
    output:
        directory("results/checkpoints/gist{n}"),
    input:
        train="results/dataset/train.gist{n}.jsonl",
        val="results/dataset/val.gist{n}.jsonl",
        model="results/model/base/model_ref.json",
        code=lib("gist", "train", "model"),
    params:
        model=section("model"),
        train=section("train"),
        instruction=config["gist"]["instruction"],
        seed=config["seed"],
        state="results/state/train/gist{n}",
    log:
        "logs/train_gist/gist{n}.log",
    benchmark:
        "benchmarks/train_gist/gist{n}.tsv"
    resources:
        gpu=1,
        mem_mb=24000,
        runtime=240,
    shell:
        "python scripts/train_gist.py --model {params.model:q} --model-ref {input.model} --train-cfg {params.train:q} "
        "--train {input.train} --val {input.val} --n-gist {wildcards.n} --instruction {params.instruction:q} "
        "--seed {params.seed} --out-dir {output} --state-dir {params.state} --log {log}"
