"""`apistream bench`: throughput, freshness, memory and scaling of the pipeline, measured on
this machine next to references run in the same process (the generator, DuckDB)."""
