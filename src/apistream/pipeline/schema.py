"""Schemas of the raw records, the events lake and the quarantine, and the quarantine reasons."""

from pyspark.sql.types import StringType, StructField, StructType

from apistream.fields import ACCESS_LOG_REQUIRED, RAW_FIELDS, REQUIRED_FIELDS
from apistream.reasons import REASONS

__all__ = ["ACCESS_LOG_REQUIRED", "RAW_FIELDS", "REASONS", "REQUIRED_FIELDS"]

CORRUPT_COLUMN = "_corrupt_record"

# Every field is read as a string, so a wrong type is a quarantine reason naming the field
# rather than a silently nulled value; typing happens in parse.py with try_cast.
RAW_SCHEMA = StructType(
    [StructField(f, StringType()) for f in RAW_FIELDS] + [StructField(CORRUPT_COLUMN, StringType())]
)

EVENTS_DDL = (
    "request_id string, event_time timestamp, method string, path string, endpoint string, "
    "status int, status_class string, latency_ms double, bytes_sent bigint, client_ip string, "
    "user_agent string, api_key string, service string, team string, latency_slo_ms double, "
    "ingest_time timestamp, source_file string, key_hash1 bigint, key_hash2 bigint, date string, "
    "hour int"
)
EVENT_COLUMNS = tuple(c.strip().split(" ")[0] for c in EVENTS_DDL.split(","))

QUARANTINE_DDL = (
    "raw string, raw_bytes binary, reason string, detail string, source_file string, "
    "ingest_time timestamp, ingest_date string"
)
QUARANTINE_COLUMNS = tuple(c.strip().split(" ")[0] for c in QUARANTINE_DDL.split(","))
