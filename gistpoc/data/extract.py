"""Parsers that turn raw dumps into plain-text documents (one module per source in ``gistpoc.data.sources``).

Every parser yields document records ``{doc_id, source, collection, title, text, url, license, attribution, meta}``
(``sources.common.document``) and records bad input (file, line or page, reason) in an ``IssueLog`` instead of
failing the whole run. Large inputs are streamed, never loaded whole.
"""

from gistpoc.data.sources.arxiv import iter_arxiv_metadata, iter_unarxive
from gistpoc.data.sources.common import document
from gistpoc.data.sources.hf import iter_hf_dataset
from gistpoc.data.sources.techdocs import html_to_text, iter_techdocs, markdown_to_text, rst_to_text
from gistpoc.data.sources.wikipedia import iter_mediawiki_xml, iter_wikitext_raw, wikitext_to_text

__all__ = ["document", "html_to_text", "iter_arxiv_metadata", "iter_hf_dataset", "iter_mediawiki_xml", "iter_techdocs", "iter_unarxive",
           "iter_wikitext_raw", "markdown_to_text", "rst_to_text", "wikitext_to_text"]
