# Phases 2-3 of the design: the gist mask, and one trained LoRA checkpoint per gist count N.


rule plot_mask:
    input:
        dataset=get_dataset("train", N_GIST[0]),
        model=MODEL,
        model_sum=MODEL_SUM,
    output:
        "results/figures/attention_mask.png",
    log:
        "logs/plot_mask/plot_mask.log",
    conda:
        "../envs/train.yaml"
    params:
        code=script_code("plot_mask"),
        n=N_GIST[0],
    shell:
        "python scripts/plot_mask.py --dataset {input.dataset} --model-ref {input.model} --n-gist {params.n} "
        "--out {output} --log {log}"


rule pretrain_gist:
    input:
        train=dataset_of("train"),
        model=MODEL,
        model_sum=MODEL_SUM,
        warm=get_warm_start,
        volume=volume_input,
    output:
        dir=directory("results/pretrained/gist{n}"),
        manifest="results/pretrained/gist{n}.sha256",
    log:
        "logs/pretrain_gist/gist{n}.log",
    benchmark:
        "benchmarks/pretrain_gist/gist{n}.tsv"
    priority: 10  # the critical path: start trainings before the baselines' evaluations
    conda:
        "../envs/train.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
        mem_mb=scaled(8000),
        runtime=scaled(240),
    params:
        code=script_code("pretrain_gist"),
        sources=lambda wc: ext_hash(get_warm_start(wc)),
        model=section("model"),
        train=pretrain_train(),
        instruction=config["gist"]["instruction"],
        seed=config["seed"],
        digits=config["data"]["passkey_digits"],
        state="results/state/pretrain/gist{n}",
        warm=warm_start_arg,
        n=lambda wc: n_of(wc.n),
        chunks=chunk_arg,
        volume=volume_arg,
    shell:
        "python scripts/pretrain_gist.py --model {params.model:q} --model-ref {input.model} --train-cfg {params.train:q} "
        "--train {input.train} --n-gist {params.n} {params.chunks} --instruction {params.instruction:q} "
        "--seed {params.seed} --passkey-digits {params.digits} --out-dir {output.dir} --state-dir {params.state} "
        "{params.warm} {params.volume} --manifest {output.manifest} --log {log}"


rule self_study:
    input:
        train=get_dataset("train", N_GIST[0]),  # the contexts are the same in every gist-N's records
        model=MODEL,
        model_sum=MODEL_SUM,
    output:
        "results/self_study/train.jsonl",
    log:
        "logs/self_study/self_study.log",
    benchmark:
        "benchmarks/self_study/self_study.tsv"
    priority: 10
    conda:
        "../envs/evaluate.yaml"  # it answers prompts with the answering engines, as the evaluations do
    threads: TORCH_THREADS
    resources:
        gpu=1,
        mem_mb=scaled(8000),
        runtime=scaled(120),
    params:
        code=script_code("self_study"),
        model=section("model"),
        prompts=json.dumps(config["self_study"]["prompts"]),
        max_new_tokens=config["self_study"]["max_new_tokens"],
        instruction=config["gist"]["instruction"],
        engine=config["eval"]["engine"],
        engine_batch=config["eval"]["engine_batch"],
        seed=config["seed"],
    shell:
        "python scripts/self_study.py --model {params.model:q} --model-ref {input.model} --train {input.train} "
        "--prompts {params.prompts:q} --max-new-tokens {params.max_new_tokens} --instruction {params.instruction:q} "
        "--engine {params.engine} --engine-batch {params.engine_batch} --seed {params.seed} --out {output} --log {log}"


rule train_gist:
    input:
        train=dataset_of("train"),
        val=dataset_of("val"),
        model=MODEL,
        model_sum=MODEL_SUM,
        pretrained=get_pretrained,
        self_study=get_self_study,
    output:
        dir=directory("results/checkpoints/gist{n}"),
        manifest="results/checkpoints/gist{n}.sha256",
    log:
        "logs/train_gist/gist{n}.log",
    benchmark:
        "benchmarks/train_gist/gist{n}.tsv"
    priority: 10  # the critical path: start trainings before the baselines' evaluations
    conda:
        "../envs/train.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
        mem_mb=scaled(8000),
        runtime=scaled(240),
    params:
        code=script_code("train_gist"),
        sources=lambda wc: ext_hash(get_pretrained(wc)),
        model=section("model"),
        train=section("train"),
        instruction=config["gist"]["instruction"],
        seed=config["seed"],
        digits=config["data"]["passkey_digits"],
        state="results/state/train/gist{n}",
        pretrained=pretrained_arg,
        n=lambda wc: n_of(wc.n),
        chunks=chunk_arg,
        extra=self_study_arg,
    shell:
        "python scripts/train_gist.py --model {params.model:q} --model-ref {input.model} --train-cfg {params.train:q} "
        "--train {input.train} {params.extra} --val {input.val} --n-gist {params.n} {params.chunks} --instruction {params.instruction:q} "
        "--seed {params.seed} --passkey-digits {params.digits} --out-dir {output.dir} --state-dir {params.state} "
        "{params.pretrained} --manifest {output.manifest} --log {log}"


use rule train_gist as train_ablation with:
    # stage 2's rule (its script, shell and the params not named here) for a gist-N checkpoint with other train settings
    input:
        train=get_ablation_dataset("train"),
        val=get_ablation_dataset("val"),
        model=MODEL,
        model_sum=MODEL_SUM,
        pretrained=get_ablation_pretrained,
        self_study=[],
    output:
        dir=directory("results/ablations/{ablation}/checkpoint"),
        manifest="results/ablations/{ablation}/checkpoint.sha256",
    log:
        "logs/train_ablation/{ablation}.log",
    benchmark:
        "benchmarks/train_ablation/{ablation}.tsv"
    params:
        sources=lambda wc: ext_hash(get_ablation_pretrained(wc)),
        train=ablation_train,
        state="results/state/ablations/{ablation}",
        pretrained=ablation_pretrained_arg,
        n=ablation_n,
        chunks="",
        extra="",
