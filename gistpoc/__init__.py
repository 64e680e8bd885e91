"""gistpoc: gist-token context compression vs RAG vs full context.

Sub-packages follow the stages of the experiment: ``data``, ``qa``, ``gist``, ``train``,
``baselines``, ``evaluate``, ``report``. Scripts under ``scripts/`` are thin wrappers around them.
"""

__version__ = "0.1.0"
