# Named targets for the phases of a run (a GPU machine runs them one at a time or all at once) and `publish`, which
# writes the run's docs/results/<run>/ folder from its outputs. On the GPU machine:
#   snakemake --configfile <config> --profile profiles/gpu stage1 | baselines | gist_evals | engine_check | publish


localrules:
    stage1,
    baselines,
    gist_evals,
    engine_check,
    publish,


rule stage1:
    input:
        get_stage1_targets(),


rule baselines:
    input:
        get_baseline_targets(),


rule gist_evals:
    input:
        get_gist_targets(),


rule engine_check:
    input:
        get_engine_check_targets(),


rule publish:
    input:
        config="results/report/config.yaml",
        report="results/report.html",
        summary="results/eval/summary.csv",
        passkey="results/eval/passkey_breakdown.csv",
        sheet="results/eval/reasoning_rating_sheet.csv",
        stats="results/data/corpus_stats.json",
        predictions=get_predictions(),
        controls=get_control_predictions(),
        ablation_predictions=get_ablation_predictions(),
        engine_check=get_engine_check_targets(),
        engine_check_answers=get_engine_check_answers(),
        attention="results/figures/gist_attention.png",
        checkpoints=[ancient(f"results/checkpoints/gist{n}") for n in GIST_KEYS],
        checkpoint_sums=[manifest(f"results/checkpoints/gist{n}") for n in GIST_KEYS],
        ablation_checkpoints=get_ablation_checkpoints(),
        pretrained=get_all_pretrained,
        questions="results/data/qa.jsonl",
        qa_issues="results/data/qa.issues.json",
        judgments=get_judgments(),
        judge_calibration=get_judge_calibration(),
    output:
        # a receipt under results/: the published folder is committed, and a committed output would make publish look
        # done in a fresh clone (Snakemake does not rerun a job whose output exists because its inputs are missing)
        "results/publish/provenance.json",
    log:
        "logs/publish/publish.log",
    conda:
        "../envs/report.yaml"
    params:
        code=script_code("publish_run"),
        dest=publish_dir(config),
        controls=publish_list_arg("controls"),
        ablation_predictions=publish_list_arg("ablation_predictions"),
        ablation_checkpoints=publish_list_arg("ablation_checkpoints"),
        engine_check=publish_list_arg("engine_check"),
        engine_check_answers=publish_list_arg("engine_check_answers"),
        pretrained=pretrained_publish_arg,
        judgments=publish_list_arg("judgments"),
        judge_calibration=publish_list_arg("judge_calibration"),
    shell:
        "python scripts/publish_run.py --dest {params.dest:q} --config {input.config} --report {input.report} "
        "--summary {input.summary} --passkey {input.passkey} --rating-sheet {input.sheet} --stats {input.stats} "
        "--predictions {input.predictions} --checkpoints {input.checkpoints} --figures {input.attention} "
        "{params.controls} {params.ablation_predictions} {params.ablation_checkpoints} {params.engine_check} "
        "{params.engine_check_answers} {params.pretrained} {params.judgments} {params.judge_calibration} "
        "--questions {input.questions} --qa-issues {input.qa_issues} --logs logs benchmarks --receipt {output} --log {log}"
