# Phases 4-5 of the design: every method answers the same test questions; every metric of 5.1/5.2.

# the params every evaluation rule shares; EVAL_ARGS passes them to scripts/evaluate_method.py
EVAL_PARAMS = dict(
    model=eval_model_section(),
    gist_instruction=config["gist"]["instruction"],
    baseline_instruction=config["eval"]["baseline_instruction"],
    max_new_tokens=config["eval"]["max_new_tokens"],
    warmup=config["eval"]["warmup_items"],
    engine=config["eval"]["engine"],
    engine_batch=config["eval"]["engine_batch"],
    embedder=config["eval"]["rag"]["embedding_model"],
    top_k=config["eval"]["rag"]["top_k"],
    seed=config["seed"],
)
EVAL_ARGS = " ".join(
    [
        "--model {params.model:q} --model-ref {input.model} --dataset {input.dataset} "
        "--gist-instruction {params.gist_instruction:q} --baseline-instruction {params.baseline_instruction:q} "
        "--max-new-tokens {params.max_new_tokens} --warmup-items {params.warmup} "
        "--engine {params.engine} --engine-batch {params.engine_batch} "
        "--embedding-model {params.embedder:q} --top-k {params.top_k} --seed {params.seed} "
        "--out {output.answers} --environment-out {output.environment} --log {log}",
    ]
)


rule build_rag_index:
    input:
        dataset=get_eval_dataset(),
        model=MODEL,
        model_sum=MODEL_SUM,
    output:
        db=directory("results/rag/chroma"),
        manifest="results/rag/index.json",
    log:
        "logs/build_rag_index/build_rag_index.log",
    conda:
        "../envs/evaluate.yaml"
    threads: TORCH_THREADS
    params:
        code=script_code("build_rag_index"),
        embedder=config["eval"]["rag"]["embedding_model"],
        chunk_tokens=config["eval"]["rag"]["chunk_tokens"],
    shell:
        "python scripts/build_rag_index.py --dataset {input.dataset} --model-ref {input.model} "
        "--embedding-model {params.embedder:q} --chunk-tokens {params.chunk_tokens} "
        "--db {output.db} --manifest {output.manifest} --log {log}"


rule evaluate_baseline:
    input:
        dataset=get_eval_dataset(),
        model=MODEL,
        model_sum=MODEL_SUM,
        rag=get_rag_manifest,
    output:
        answers=ensure("results/eval/{method}/answers.jsonl", non_empty=True),
        environment="results/eval/{method}/environment.json",
    log:
        "logs/evaluate_baseline/{method}.log",
    benchmark:
        "benchmarks/evaluate/{method}.tsv"
    wildcard_constraints:
        method="closed_book|full_context|rag",
    priority: 5  # full context is the longest evaluation: start it early, beside the trainings
    conda:
        "../envs/evaluate.yaml"
    threads: EVAL_THREADS
    resources:
        gpu=1,
        mem_mb=scaled(8000),
        runtime=scaled(120),
    params:
        **EVAL_PARAMS,
        code=script_code("evaluate_method"),
        rag_arg=rag_manifest_arg,
    shell:
        f"python scripts/evaluate_method.py --method {{wildcards.method}} {{params.rag_arg}} {EVAL_ARGS}"


rule evaluate_gist:
    input:
        dataset=dataset_of("test"),
        model=MODEL,
        model_sum=MODEL_SUM,
        checkpoint=get_checkpoint,
        checkpoint_sum=get_checkpoint_sum,
    output:
        answers=ensure("results/eval/gist{n}/answers.jsonl", non_empty=True),
        environment="results/eval/gist{n}/environment.json",
        caches=directory("results/eval/gist{n}/caches"),
    log:
        "logs/evaluate_gist/gist{n}.log",
    benchmark:
        "benchmarks/evaluate/gist{n}.tsv"
    priority: 5
    conda:
        "../envs/evaluate.yaml"
    threads: EVAL_THREADS
    resources:
        gpu=1,
        mem_mb=scaled(8000),
        runtime=scaled(120),
    params:
        **EVAL_PARAMS,
        code=script_code("evaluate_method"),
    shell:
        f"python scripts/evaluate_method.py --method gist{{wildcards.n}} --checkpoint {{input.checkpoint}} --cache-dir {{output.caches}} {EVAL_ARGS}"


if BUDGET_METHODS:

    rule evaluate_budget:
        input:
            dataset=get_eval_dataset(),
            model=MODEL,
            model_sum=MODEL_SUM,
        output:
            answers=[
                ensure(f"results/eval/{m}/answers.jsonl", non_empty=True)
                for m in BUDGET_METHODS
            ],
            environments=[f"results/eval/{m}/environment.json" for m in BUDGET_METHODS],
        log:
            "logs/evaluate_budget/evaluate_budget.log",
        benchmark:
            "benchmarks/evaluate/budget.tsv"
        priority: 3
        conda:
            "../envs/evaluate.yaml"
        threads: EVAL_THREADS
        resources:
            gpu=1,
            mem_mb=scaled(8000),
            runtime=scaled(120),
        params:
            code=script_code("evaluate_budget"),
            model=eval_model_section(),
            baseline_instruction=config["eval"]["baseline_instruction"],
            max_new_tokens=config["eval"]["max_new_tokens"],
            warmup=config["eval"]["warmup_items"],
            engine=config["eval"]["engine"],
            engine_batch=config["eval"]["engine_batch"],
            methods=" ".join(BUDGET_METHODS),
            dirs=" ".join(f"results/eval/{m}" for m in BUDGET_METHODS),
            window=BUDGET["window"],
            pool=BUDGET["pool"],
            qtypes=BUDGET_QTYPES_ARG,
            seed=config["seed"],
        shell:
            "python scripts/evaluate_budget.py --methods {params.methods} --out-dirs {params.dirs} "
            "--model {params.model:q} --model-ref {input.model} --dataset {input.dataset} "
            "--baseline-instruction {params.baseline_instruction:q} --max-new-tokens {params.max_new_tokens} "
            "--warmup-items {params.warmup} --engine {params.engine} --engine-batch {params.engine_batch} "
            "--window {params.window} --pool {params.pool} --seed {params.seed} {params.qtypes} --log {log}"


rule evaluate_rag_gist:
    input:
        dataset="results/dataset/test.gist{n}.jsonl",
        model=MODEL,
        model_sum=MODEL_SUM,
        checkpoint=get_checkpoint,
        checkpoint_sum=get_checkpoint_sum,
        rag="results/rag/index.json",
    output:
        answers=ensure("results/eval/rag_gist{n}/answers.jsonl", non_empty=True),
        environment="results/eval/rag_gist{n}/environment.json",
    log:
        "logs/evaluate_rag_gist/rag_gist{n}.log",
    benchmark:
        "benchmarks/evaluate/rag_gist{n}.tsv"
    priority: 3
    conda:
        "../envs/evaluate.yaml"
    threads: EVAL_THREADS
    resources:
        gpu=1,
        mem_mb=scaled(8000),
        runtime=scaled(120),
    params:
        **EVAL_PARAMS,
        code=script_code("evaluate_method"),
        qtypes=BUDGET_QTYPES_ARG,
    shell:
        f"python scripts/evaluate_method.py --method rag_gist{{wildcards.n}} --checkpoint {{input.checkpoint}} "
        f"--rag-manifest {{input.rag}} {{params.qtypes}} {EVAL_ARGS}"


rule evaluate_ablation:
    input:
        dataset=get_ablation_dataset("test"),
        model=MODEL,
        model_sum=MODEL_SUM,
        checkpoint=ancient("results/ablations/{ablation}/checkpoint"),
        checkpoint_sum="results/ablations/{ablation}/checkpoint.sha256",
    output:
        answers=ensure("results/ablations/{ablation}/answers.jsonl", non_empty=True),
        environment="results/ablations/{ablation}/environment.json",
    log:
        "logs/evaluate_ablation/{ablation}.log",
    benchmark:
        "benchmarks/evaluate_ablation/{ablation}.tsv"
    conda:
        "../envs/evaluate.yaml"
    threads: EVAL_THREADS
    resources:
        gpu=1,
        mem_mb=scaled(8000),
        runtime=scaled(60),
    params:
        **EVAL_PARAMS,
        code=script_code("evaluate_method"),
        n=ablation_n,
    shell:
        f"python scripts/evaluate_method.py --method gist{{params.n}} --label {{wildcards.ablation}} --qtypes passkey "
        f"--checkpoint {{input.checkpoint}} {EVAL_ARGS}"


rule evaluate_control:
    input:
        dataset=dataset_of("test"),
        model=MODEL,
        model_sum=MODEL_SUM,
        checkpoint=get_checkpoint,
        checkpoint_sum=get_checkpoint_sum,
    output:
        answers=ensure(
            "results/controls/gist{n}_{control}/answers.jsonl", non_empty=True
        ),
        environment="results/controls/gist{n}_{control}/environment.json",
    log:
        "logs/evaluate_control/gist{n}_{control}.log",
    benchmark:
        "benchmarks/evaluate_control/gist{n}_{control}.tsv"
    wildcard_constraints:
        control="|".join(CONTROL_FLAGS),
    priority: 5
    conda:
        "../envs/evaluate.yaml"
    threads: EVAL_THREADS
    resources:
        gpu=1,
        mem_mb=scaled(8000),
        runtime=scaled(60),
    params:
        **EVAL_PARAMS,
        code=script_code("evaluate_method"),
        flag=control_flag,
    shell:
        f"python scripts/evaluate_method.py --method gist{{wildcards.n}} --label gist{{wildcards.n}}_{{wildcards.control}} {{params.flag}} "
        f"--qtypes passkey factual global --checkpoint {{input.checkpoint}} {EVAL_ARGS}"


rule score_answers:
    input:
        "{folder}/answers.jsonl",
    output:
        ensure("{folder}/predictions.jsonl", non_empty=True),
    log:
        "logs/score_answers/{folder}.log",
    wildcard_constraints:
        folder=r"results/(eval|controls|ablations)/[^/]+",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(15),
    params:
        code=script_code("score_answers"),
        embedder=config["eval"]["metric_embedder"],
        digits=config["data"]["passkey_digits"],
    shell:
        "python scripts/score_answers.py --answers {input} --metric-embedder {params.embedder:q} "
        "--passkey-digits {params.digits} --out {output} --log {log}"


rule judge_answers:
    input:
        predictions=get_predictions() + get_control_predictions(),  # every method's answers and the controls'
        fixture=external(JUDGE_FIXTURE),
    output:
        judgments="results/eval/judgments.jsonl",
        calibration="results/eval/judge_calibration.json",
    log:
        "logs/judge_answers/judge_answers.log",
    conda:
        "../envs/evaluate.yaml"
    threads: TORCH_THREADS  # the proxy's embedder, for the calibration
    resources:
        api_calls=1,
    params:
        code=script_code("judge_answers"),
        sources=ext_hash([JUDGE_FIXTURE]),
        endpoint=json.dumps(config["qa"].get("openai", {}), sort_keys=True),
        judge_model=config["eval"]["judge"]["model"],
        judge_max_tokens=config["eval"]["judge"]["max_tokens"],
        judge_qtypes=" ".join(config["eval"]["judge"]["qtypes"]),
        reasoning_protocol=config["eval"]["judge"]["reasoning_protocol"],
        seed=config["seed"],
        embedder=config["eval"]["metric_embedder"],
        threshold=config["eval"]["global_proxy_threshold"],
    shell:
        "python scripts/judge_answers.py --predictions {input.predictions} --endpoint {params.endpoint:q} "
        "--judge-model {params.judge_model:q} --judge-max-tokens {params.judge_max_tokens} --qtypes {params.judge_qtypes} --seed {params.seed} --out {output.judgments} "
        "--reasoning-protocol {params.reasoning_protocol} "
        "--calibration-fixture {input.fixture} --calibration-out {output.calibration} "
        "--metric-embedder {params.embedder:q} --global-threshold {params.threshold} --log {log}"


rule summarize_eval:
    input:
        predictions=get_predictions(),
        judgments=get_judgments(),
        ratings=get_ratings(),
    output:
        summary="results/eval/summary.csv",
        passkey="results/eval/passkey_breakdown.csv",
        sheet="results/eval/reasoning_rating_sheet.csv",
    log:
        "logs/summarize_eval/summarize_eval.log",
    conda:
        "../envs/evaluate.yaml"
    params:
        code=script_code("summarize_eval"),
        sources=ext_hash(get_ratings()),
        threshold=config["eval"]["global_proxy_threshold"],
        bootstrap=config["eval"]["bootstrap_samples"],
        seed=config["seed"],
        judgments=judgments_arg,
        ratings=ratings_arg,
    shell:
        "python scripts/summarize_eval.py --predictions {input.predictions} {params.judgments} {params.ratings} "
        "--global-threshold {params.threshold} --bootstrap {params.bootstrap} --seed {params.seed} "
        "--summary {output.summary} --passkey {output.passkey} --rating-sheet {output.sheet} --log {log}"


rule evaluate_engine_check:
    input:
        dataset=get_eval_dataset(),
        model=MODEL,
        model_sum=MODEL_SUM,
    output:
        answers=ensure("results/engine_check/{method}.eager.jsonl", non_empty=True),
        environment="results/engine_check/{method}.eager.env.json",
    log:
        "logs/evaluate_engine_check/{method}.log",
    wildcard_constraints:
        method="closed_book|full_context",
    conda:
        "../envs/evaluate.yaml"
    threads: EVAL_THREADS
    resources:
        gpu=1,
        mem_mb=scaled(8000),
        runtime=scaled(120),
    params:
        code=script_code("evaluate_method"),
        model=eval_model_section(),
        baseline_instruction=config["eval"]["baseline_instruction"],
        max_new_tokens=config["eval"]["max_new_tokens"],
        warmup=config["eval"]["warmup_items"],
        seed=config["seed"],
    shell:
        "python scripts/evaluate_method.py --method {wildcards.method} --model {params.model:q} --model-ref {input.model} "
        "--dataset {input.dataset} --gist-instruction x --baseline-instruction {params.baseline_instruction:q} "
        "--max-new-tokens {params.max_new_tokens} --warmup-items {params.warmup} --seed {params.seed} "
        "--embedding-model none --qtypes passkey factual --engine eager "
        "--out {output.answers} --environment-out {output.environment} --log {log}"


rule check_engine:
    input:
        eager=get_engine_check_answers(),
        answers=[f"results/eval/{m}/answers.jsonl" for m in ENGINE_CHECK],
    output:
        "results/engine_check/engine_check.json",
    log:
        "logs/check_engine/check_engine.log",
    conda:
        "../envs/evaluate.yaml"
    params:
        code=script_code("check_engine"),
        methods=" ".join(ENGINE_CHECK),
    shell:
        "python scripts/check_engine.py --methods {params.methods} --eager {input.eager} --answers {input.answers} "
        "--out {output} --log {log}"
