# Phase 1 of the design: raw dumps -> documents -> Q&A -> passkeys -> the JSONL dataset.


rule prepare_model:
    output:
        dir=directory("results/model/base"),
        manifest="results/model/base.sha256",
    log:
        "logs/prepare_model/prepare_model.log",
    cache: "omit-software"
    conda:
        "../envs/train.yaml"
    threads: TORCH_THREADS
    resources:
        mem_mb=scaled(4000),
        runtime=scaled(30),
    params:
        code=script_code("prepare_model"),
        # only what the conversion reads: attention kernel, device or dtype changes rerun no data stage
        model=json.dumps(
            {
                k: config["model"][k]
                for k in ("source", "name_or_path", "save_dtype", "gguf")
                if k in config["model"]
            },
            sort_keys=True,
        ),
    shell:
        "python scripts/prepare_model.py --model {params.model:q} --out-dir {output.dir} "
        "--manifest {output.manifest} --log {log}"


rule extract_wikipedia:
    input:
        xml=external(config["sources"]["wikipedia_xml"]),
        wikitext=external(config["sources"]["wikitext_raw"]),
    output:
        docs=ensure("results/data/extracted/wikipedia.jsonl", non_empty=True),
        issues="results/data/extracted/wikipedia.issues.json",
    log:
        "logs/extract_wikipedia/extract_wikipedia.log",
    conda:
        "../envs/data.yaml"
    params:
        code=script_code("extract_source"),
        sources=ext_hash(
            config["sources"]["wikipedia_xml"] + config["sources"]["wikitext_raw"]
        ),
    shell:
        "python scripts/extract_source.py --wikipedia-xml {input.xml:q} --wikitext-raw {input.wikitext:q} "
        "--out {output.docs} --issues {output.issues} --log {log}"


rule extract_arxiv:
    input:
        metadata=external(config["sources"]["arxiv_metadata"]),
        unarxive=external(config["sources"]["unarxive"]),
    output:
        docs=ensure("results/data/extracted/arxiv.jsonl", non_empty=True),
        issues="results/data/extracted/arxiv.issues.json",
    log:
        "logs/extract_arxiv/extract_arxiv.log",
    conda:
        "../envs/data.yaml"
    params:
        code=script_code("extract_source"),
        sources=ext_hash(
            config["sources"]["arxiv_metadata"] + config["sources"]["unarxive"]
        ),
    shell:
        "python scripts/extract_source.py --arxiv-metadata {input.metadata:q} --unarxive {input.unarxive:q} "
        "--out {output.docs} --issues {output.issues} --log {log}"


rule extract_techdocs:
    input:
        dirs=external(config["sources"]["techdocs_dirs"]),
    output:
        docs=ensure("results/data/extracted/techdocs.jsonl", non_empty=True),
        issues="results/data/extracted/techdocs.issues.json",
    log:
        "logs/extract_techdocs/extract_techdocs.log",
    conda:
        "../envs/data.yaml"
    params:
        code=script_code("extract_source"),
        sources=ext_hash(config["sources"]["techdocs_dirs"]),
    shell:
        "python scripts/extract_source.py --techdocs-dir {input.dirs:q} "
        "--out {output.docs} --issues {output.issues} --log {log}"


rule extract_hf:
    output:
        docs=ensure("results/data/extracted/hf.jsonl", non_empty=True),
        issues="results/data/extracted/hf.issues.json",
    log:
        "logs/extract_hf/extract_hf.log",
    conda:
        "../envs/data.yaml"
    params:
        code=script_code("extract_source"),
        hf=json.dumps(config["sources"]["hf_datasets"], sort_keys=True),
    shell:
        "python scripts/extract_source.py --hf {params.hf:q} "
        "--out {output.docs} --issues {output.issues} --log {log}"


if DEBIAN:

    localrules:
        fetch_debian_docs,

    rule fetch_debian_docs:
        input:
            lock=external(DEBIAN["lock"]),
        output:
            debian_debs(),
        log:
            "logs/fetch_debian_docs/fetch_debian_docs.log",
        conda:
            "../envs/data.yaml"
        params:
            dir=DEBIAN["dir"],
        shell:
            "python -m gistpoc.data.sources.debian fetch --lock {input.lock} --dir {params.dir:q} > {log} 2>&1"

    rule extract_debian_docs:
        input:
            lock=external(DEBIAN["lock"]),
            debs=debian_debs(),
        output:
            docs=ensure("results/data/extracted/debian_docs.jsonl", non_empty=True),
            issues="results/data/extracted/debian_docs.issues.json",
        log:
            "logs/extract_debian_docs/extract_debian_docs.log",
        conda:
            "../envs/data.yaml"
        resources:
            mem_mb=scaled(4000),
        params:
            code=script_code("extract_debian_docs"),
            # the lock holds every .deb's sha256, and the script checks each file against it
            sources=ext_hash([DEBIAN["lock"]]),
            dir=DEBIAN["dir"],
        shell:
            "python scripts/extract_debian_docs.py --lock {input.lock} --dir {params.dir:q} "
            "--out {output.docs} --issues {output.issues} --log {log}"

    rule build_text_volume:
        input:
            extracted="results/data/extracted/debian_docs.jsonl",
            documents="results/data/documents.jsonl",
            model=MODEL,
            model_sum=MODEL_SUM,
        output:
            texts="results/data/volume/train.jsonl",
            stats="results/data/volume/stats.json",
        log:
            "logs/build_text_volume/build_text_volume.log",
        conda:
            "../envs/data.yaml"
        threads: TORCH_THREADS
        resources:
            mem_mb=scaled(6000),
        params:
            code=script_code("build_text_volume"),
        shell:
            "python scripts/build_text_volume.py --extracted {input.extracted} --documents {input.documents} "
            "--model-ref {input.model} --out {output.texts} --stats {output.stats} --log {log}"


rule build_documents:
    input:
        extracted=get_extracted(),
        model=MODEL,
        model_sum=MODEL_SUM,
    output:
        docs=ensure("results/data/documents.jsonl", non_empty=True),
        stats="results/data/corpus_stats.json",
    log:
        "logs/build_documents/build_documents.log",
    conda:
        "../envs/data.yaml"
    threads: TORCH_THREADS
    params:
        code=script_code("build_documents"),
        min_tokens=config["data"]["min_tokens"],
        max_tokens=config["data"]["max_tokens"],
        windows=config["data"]["windows_per_doc"],
        split=json.dumps(config["data"]["split"], sort_keys=True),
        seed=config["seed"],
    shell:
        "python scripts/build_documents.py --inputs {input.extracted} --model-ref {input.model} "
        "--min-tokens {params.min_tokens} --max-tokens {params.max_tokens} --windows-per-doc {params.windows} "
        "--split {params.split:q} --seed {params.seed} --out {output.docs} --stats {output.stats} --log {log}"


rule generate_qa:
    input:
        docs="results/data/documents.jsonl",
    output:
        qa=qa_output("results/data/qa.jsonl"),
        issues="results/data/qa.issues.json",
    log:
        "logs/generate_qa/generate_qa.log",
    cache: "omit-software"
    conda:
        "../envs/data.yaml"
    threads: TORCH_THREADS  # the local backend runs a chat model here
    resources:
        api_calls=1,
    params:
        code=qa_code(),
        qa=section("qa"),
    shell:
        "python scripts/generate_qa.py --documents {input.docs} --qa {params.qa:q} "
        "--out {output.qa} --issues {output.issues} --log {log}"


rule inject_passkeys:
    input:
        docs="results/data/documents.jsonl",
    output:
        ensure("results/data/passkeys.jsonl", non_empty=True),
    log:
        "logs/inject_passkeys/inject_passkeys.log",
    conda:
        "../envs/data.yaml"
    params:
        code=script_code("inject_passkeys"),
        seed=config["seed"],
        digits=config["data"]["passkey_digits"],
    shell:
        "python scripts/inject_passkeys.py --documents {input.docs} --seed {params.seed} "
        "--digits {params.digits} --out {output} --log {log}"


rule write_dataset:
    input:
        docs="results/data/documents.jsonl",
        qa="results/data/qa.jsonl",
        passkeys="results/data/passkeys.jsonl",
        model=MODEL,
        model_sum=MODEL_SUM,
    output:
        train=ensure("results/dataset/train.gist{n}.jsonl", non_empty=True),
        val=ensure("results/dataset/val.gist{n}.jsonl", non_empty=True),
        test=ensure("results/dataset/test.gist{n}.jsonl", non_empty=True),
    log:
        "logs/write_dataset/gist{n}.log",
    priority: 10  # feeds the trainings (the critical path)
    conda:
        "../envs/data.yaml"
    params:
        code=script_code("write_dataset"),
        instruction=config["gist"]["instruction"],
    shell:
        "python scripts/write_dataset.py --documents {input.docs} --qa {input.qa} --passkeys {input.passkeys} "
        "--model-ref {input.model} --n-gist {wildcards.n} --instruction {params.instruction:q} "
        "--train {output.train} --val {output.val} --test {output.test} --log {log}"


rule dataset:
    input:
        expand("results/dataset/{split}.gist{n}.jsonl", split=SPLITS, n=N_GIST),
