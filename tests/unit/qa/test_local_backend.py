"""gistpoc.qa.local_backend: the evidence of a question the local model wrote is found in the document as the LLM
writer's is (``llm_questions.find_span``)."""

from gistpoc.qa.local_backend import _evidence


def test_evidence_is_found_exactly_or_respaced_and_never_invented():
    text = 'The castle was built in 1240 , by the "old" king.'
    assert _evidence(text, "built in 1240") == [[text.index("built"), text.index("built") + 13]]
    start = text.index("1240")
    assert _evidence(text, '"1240, by the old king"') == [[start, len(text) - 1]]   # re-spaced, quote marks dropped
    assert _evidence(text, "built in 1241") == [] and _evidence(text, "") == [] and _evidence(text, None) == []
