# Phase 5 of the design: figures and the self-contained HTML report.


# light bookkeeping and scoring: run where Snakemake runs (never queued as cluster jobs). Scoring a method's answers
# (token F1, passkey, one MiniLM pass over a few hundred short answers) takes seconds; a cluster job per method cost
# ~25 s of scheduler latency each on the SLURM check (13 of them in the tiny config).
localrules:
    write_run_config,
    plot_rulegraph,
    plot_mask,
    score_answers,
    summarize_eval,
    build_report,


rule write_run_config:
    output:
        "results/report/config.yaml",
    log:
        "logs/write_run_config/write_run_config.log",
    conda:
        "../envs/report.yaml"
    params:
        code=script_code("write_run_config"),
        config=json.dumps(config, sort_keys=True),
    shell:
        "python scripts/write_run_config.py --config {params.config:q} --out {output} --log {log}"


rule plot_gist_attention:
    input:
        dataset=f"results/dataset/test.gist{N_GIST[len(N_GIST) // 2]}.jsonl",
        checkpoint=ancient(f"results/checkpoints/gist{N_GIST[len(N_GIST) // 2]}"),
        checkpoint_sum=manifest(f"results/checkpoints/gist{N_GIST[len(N_GIST) // 2]}"),
        model=MODEL,
        model_sum=MODEL_SUM,
    output:
        "results/figures/gist_attention.png",
    log:
        "logs/plot_gist_attention/plot_gist_attention.log",
    conda:
        "../envs/train.yaml"
    threads: TORCH_THREADS
    params:
        code=script_code("plot_gist_attention"),
        model=section("model"),
        n=N_GIST[len(N_GIST) // 2],
        instruction=config["gist"]["instruction"],
    shell:
        "python scripts/plot_gist_attention.py --model {params.model:q} --model-ref {input.model} "
        "--checkpoint {input.checkpoint} --dataset {input.dataset} --n-gist {params.n} "
        "--instruction {params.instruction:q} --out {output} --log {log}"


rule plot_rulegraph:
    input:
        snakefile=external(["Snakefile"]),
        rules=external(
            sorted(
                f"rules/{p.name}"
                for p in Path(workflow.basedir, "rules").glob("*.smk")
            )
        ),
        config="results/report/config.yaml",
    output:
        "results/figures/rulegraph.svg",
    log:
        "logs/plot_rulegraph/plot_rulegraph.log",
    conda:
        "../envs/report.yaml"
    params:
        code=script_code("dot_to_svg"),
        sources=ext_hash(
            ["Snakefile"]
            + sorted(
                f"rules/{p.name}"
                for p in Path(workflow.basedir, "rules").glob("*.smk")
            )
        ),
    shell:
        "(snakemake --rulegraph --nolock results/report.html --configfile {input.config} "
        "| python scripts/dot_to_svg.py --out {output}) 2> {log}"


rule build_report:
    input:
        config="results/report/config.yaml",
        summary="results/eval/summary.csv",
        passkey="results/eval/passkey_breakdown.csv",
        predictions=get_predictions(),
        environments=get_environments(),
        stats="results/data/corpus_stats.json",
        qa_issues="results/data/qa.issues.json",
        checkpoints=[ancient(f"results/checkpoints/gist{n}") for n in GIST_KEYS],
        checkpoint_sums=[manifest(f"results/checkpoints/gist{n}") for n in GIST_KEYS],
        mask="results/figures/attention_mask.png",
        attention="results/figures/gist_attention.png",
        rulegraph="results/figures/rulegraph.svg",
        ablation_checkpoints=get_ablation_checkpoints(),
        ablation_checkpoint_sums=get_ablation_checkpoint_sums(),
        ablation_predictions=get_ablation_predictions(),
        pretrained=get_all_pretrained,
        controls=get_control_predictions(),
        judge_calibration=get_judge_calibration(),
        judgments=get_judgments(),
    output:
        "results/report.html",
    log:
        "logs/build_report/build_report.log",
    conda:
        "../envs/report.yaml"
    params:
        code=script_code("build_report"),
        sources=ext_hash(get_all_pretrained()),
        ablations=ablations_arg,
        pretrained=pretrained_report_arg,
        controls=controls_arg,
        judge_calibration=publish_list_arg("judge_calibration"),
        judgments=publish_list_arg("judgments"),
    shell:
        "python scripts/build_report.py {params.ablations} {params.pretrained} {params.controls} {params.judge_calibration} {params.judgments} --config {input.config} --summary {input.summary} --passkey {input.passkey} "
        "--predictions {input.predictions} --environments {input.environments} --stats {input.stats} --checkpoints {input.checkpoints} "
        "--mask {input.mask} --attention {input.attention} --rulegraph {input.rulegraph} "
        "--qa-issues {input.qa_issues} --out {output} --log {log}"
