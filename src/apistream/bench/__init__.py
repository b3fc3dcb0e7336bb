"""`apistream bench`: throughput, freshness (files and Kafka), memory and scaling of the
pipeline, measured on this machine next to peers run in the same process (the generator,
DuckDB, GoAccess)."""
