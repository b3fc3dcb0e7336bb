"""Why a record is quarantined, defined once (plain Python: the config, the generator, the
Spark rules and the sinks all import it)."""

# One reason per quarantined record: the first rule it breaks, in this order.
REASONS = (
    "missing_file",
    "corrupt_archive",
    "line_too_long",
    "invalid_utf8",
    "blank_line",
    "malformed_json",
    "unparseable_line",
    "missing_field",
    "wrong_type",
    "invalid_method",
    "invalid_status",
    "negative_latency",
    "absurd_latency",
    "future_timestamp",
    "stale_timestamp",
)

# The reasons the generator plants (generator.defects has one rate each), in the order its
# category codes use: changing the order changes every generated file of a seed.
DEFECT_KINDS = (
    "malformed_json",
    "missing_field",
    "wrong_type",
    "negative_latency",
    "absurd_latency",
    "invalid_status",
    "invalid_method",
    "future_timestamp",
    "stale_timestamp",
)
assert set(DEFECT_KINDS) <= set(REASONS), "the generator plants a reason the rules do not know"
