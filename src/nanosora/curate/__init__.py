"""Curation: Data-Juicer-style preprocessing of video-text manifests, locally or on Ray.

- ``ops/``: operators (filters compute statistic columns, then apply thresholds; mappers split,
  resize and clean; deduplicators group over the whole manifest), with Data-Juicer's names and
  parameters where it has the operator;
- ``recipe``: Data-Juicer recipes, checked before any work;
- ``frames``: the one shared decode pass per clip;
- ``pipeline``: one input row through a pass of operators;
- ``local`` / ``ray_engine``: the process-pool and Ray Data engines;
- ``journal``: resumable per-row results;
- ``runner``: ``nanosora curate``; ``analyze``: ``nanosora analyze``; ``rejects``: the report.
"""
