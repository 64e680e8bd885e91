# Phase 1 of the design: raw dumps -> documents -> Q&A -> passkeys -> the JSONL dataset.


rule prepare_model:
    output:
        ref="results/model/base/model_ref.json",
    input:
        lib("model"),
    params:
        model=section("model"),
    log:
        "logs/prepare_model/prepare_model.log",
    cache: "omit-software"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "python scripts/prepare_model.py --model {params.model:q} --out-dir results/model/base --log {log}"


rule extract_wikipedia:
    output:
        docs="results/data/extracted/wikipedia.jsonl",
        issues="results/data/extracted/wikipedia.issues.json",
    input:
        xml=config["sources"]["wikipedia_xml"],
        wikitext=config["sources"]["wikitext_raw"],
        code=lib("data"),
    log:
        "logs/extract_wikipedia/extract_wikipedia.log",
    shell:
        "python scripts/extract_source.py --wikipedia-xml {input.xml:q} --wikitext-raw {input.wikitext:q} "
        "--out {output.docs} --issues {output.issues} --log {log}"


rule extract_arxiv:
    output:
        docs="results/data/extracted/arxiv.jsonl",
        issues="results/data/extracted/arxiv.issues.json",
    input:
        metadata=config["sources"]["arxiv_metadata"],
        unarxive=config["sources"]["unarxive"],
        code=lib("data"),
    log:
        "logs/extract_arxiv/extract_arxiv.log",
    shell:
        "python scripts/extract_source.py --arxiv-metadata {input.metadata:q} --unarxive {input.unarxive:q} "
        "--out {output.docs} --issues {output.issues} --log {log}"


rule extract_techdocs:
    output:
        docs="results/data/extracted/techdocs.jsonl",
        issues="results/data/extracted/techdocs.issues.json",
    input:
        dirs=config["sources"]["techdocs_dirs"],
        code=lib("data"),
    log:
        "logs/extract_techdocs/extract_techdocs.log",
    shell:
        "python scripts/extract_source.py --techdocs-dir {input.dirs:q} "
        "--out {output.docs} --issues {output.issues} --log {log}"


rule extract_hf:
    output:
        docs="results/data/extracted/hf.jsonl",
        issues="results/data/extracted/hf.issues.json",
    input:
        code=lib("data"),
    params:
        hf=json.dumps(config["sources"]["hf_datasets"], sort_keys=True),
    log:
        "logs/extract_hf/extract_hf.log",
    shell:
        "python scripts/extract_source.py --hf {params.hf:q} "
        "--out {output.docs} --issues {output.issues} --log {log}"


rule build_documents:
    output:
        docs="results/data/documents.jsonl",
        stats="results/data/corpus_stats.json",
    input:
        extracted=get_extracted(),
        model="results/model/base/model_ref.json",
        code=lib("data", "model"),
    params:
        min_tokens=config["data"]["min_tokens"],
        max_tokens=config["data"]["max_tokens"],
        windows=config["data"]["windows_per_doc"],
        split=json.dumps(config["data"]["split"], sort_keys=True),
        seed=config["seed"],
    log:
        "logs/build_documents/build_documents.log",
    shell:
        "python scripts/build_documents.py --inputs {input.extracted} --model-ref {input.model} "
        "--min-tokens {params.min_tokens} --max-tokens {params.max_tokens} --windows-per-doc {params.windows} "
        "--split {params.split:q} --seed {params.seed} --out {output.docs} --stats {output.stats} --log {log}"


rule generate_qa:
    output:
        qa="results/data/qa.jsonl",
        issues="results/data/qa.issues.json",
    input:
        docs="results/data/documents.jsonl",
        code=lib("qa"),
    params:
        qa=section("qa"),
    log:
        "logs/generate_qa/generate_qa.log",
    cache: "omit-software"
    resources:
        api_calls=1,
    shell:
        "python scripts/generate_qa.py --documents {input.docs} --qa {params.qa:q} "
        "--out {output.qa} --issues {output.issues} --log {log}"


rule inject_passkeys:
    output:
        "results/data/passkeys.jsonl",
    input:
        docs="results/data/documents.jsonl",
        code=lib("data"),
    params:
        seed=config["seed"],
        digits=config["data"]["passkey_digits"],
    log:
        "logs/inject_passkeys/inject_passkeys.log",
    shell:
        "python scripts/inject_passkeys.py --documents {input.docs} --seed {params.seed} "
        "--digits {params.digits} --out {output} --log {log}"


rule write_dataset:
    output:
        train="results/dataset/train.gist{n}.jsonl",
        val="results/dataset/val.gist{n}.jsonl",
        test="results/dataset/test.gist{n}.jsonl",
    input:
        docs="results/data/documents.jsonl",
        qa="results/data/qa.jsonl",
        passkeys="results/data/passkeys.jsonl",
        model="results/model/base/model_ref.json",
        code=lib("data", "gist", "model"),
    params:
        instruction=config["gist"]["instruction"],
    log:
        "logs/write_dataset/gist{n}.log",
    shell:
        "python scripts/write_dataset.py --documents {input.docs} --qa {input.qa} --passkeys {input.passkeys} "
        "--model-ref {input.model} --n-gist {wildcards.n} --instruction {params.instruction:q} "
        "--train {output.train} --val {output.val} --test {output.test} --log {log}"


rule dataset:
    input:
        expand("results/dataset/{split}.gist{n}.jsonl", split=SPLITS, n=N_GIST),
