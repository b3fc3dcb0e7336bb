"""The fields of an API request record (no Spark): shared by the generator, the config and
the Spark schemas."""

RAW_FIELDS = (
    "request_id",
    "timestamp",
    "method",
    "path",
    "status",
    "latency_ms",
    "bytes_sent",
    "client_ip",
    "user_agent",
    "api_key",
)
REQUIRED_FIELDS = ("request_id", "timestamp", "method", "path", "status", "latency_ms")
# Access logs may carry no latency at all; their latency metrics are then empty, not zero.
ACCESS_LOG_REQUIRED = ("request_id", "timestamp", "method", "path", "status")
