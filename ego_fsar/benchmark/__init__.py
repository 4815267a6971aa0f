"""Speed benchmarks of a configured run (`tools/benchmark.py` is their command line): `fewshot` (the
episodic test with and without the feature cache), `data` (the clip decoders), `train` (one training
step per memory layout and precision, against PySlowFast's with --compare-pyslowfast) and `store` (the
feature store's extraction and episodes read from it). Each module exposes `add_arguments(parser)` (its options) and
`bench_<name>(cfg, options) -> str` (its printed report); `timing` and `report` hold what they share."""
