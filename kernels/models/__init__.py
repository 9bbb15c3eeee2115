"""The generation models that run inside model images (kernels/images/<model>/).

``python3 -m kernels.models.run <job dir>`` runs one job of the Atlas job API: the job
directory's layout (request.json, input/, progress.jsonl, log.txt, outputs/, result.json)
is described in docs/atlas.md. Every module here imports torch lazily or not at all, so
the manager, the tests and the benchmarks can import the pure parts without it.
"""
