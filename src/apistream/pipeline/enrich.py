"""Valid records -> enriched events: endpoint template, status class, date/hour, dimension."""

import hashlib
import re
from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from apistream.config import Config, Endpoint, TemplatePattern
from apistream.pipeline.dedup import KEY_HASHES
from apistream.pipeline.schema import EVENT_COLUMNS, QUARANTINE_COLUMNS

_PLACEHOLDER = re.compile(r"\{[^/{}]+\}")
# Default normalisation of id-like path segments, applied when no template matches.
DEFAULT_SEGMENTS = (
    (r"/[0-9]+(?=/|$)", "/{id}"),
    (
        r"/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?=/|$)",
        "/{uuid}",
    ),
    (r"/[0-9a-fA-F]{16,}(?=/|$)", "/{hash}"),
)


def template_regex(template: str) -> str:
    """'/users/{id}/orders' -> '^/users/[^/]+/orders/?$' (a placeholder is one segment)."""
    parts = _PLACEHOLDER.split(template)
    return "^" + "[^/]+".join(re.escape(p) for p in parts) + "/?$"


def endpoint_template(
    path: Column, patterns: Sequence[TemplatePattern], endpoints: Sequence[Endpoint]
) -> Column:
    """Path (query string dropped) -> endpoint template: configured patterns, then the known
    endpoint templates, then the default id / uuid / hash segment normalisation."""
    bare = F.regexp_extract(path, r"^([^?#]*)", 1)
    default = bare
    for regex, repl in DEFAULT_SEGMENTS:
        default = F.regexp_replace(default, regex, repl)
    matchers = [(p.regex, p.template) for p in patterns]
    matchers += [(template_regex(e.template), e.template) for e in endpoints]
    expr: Column | None = None
    for regex, template in matchers:
        expr = (
            F.when(bare.rlike(regex), F.lit(template))
            if expr is None
            else expr.when(bare.rlike(regex), F.lit(template))
        )
    return default if expr is None else expr.otherwise(default)


def status_class(status: Column) -> Column:
    """200 -> '2xx'."""
    return F.concat(F.floor(status / 100).cast("string"), F.lit("xx"))


_IPV4 = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$"


def truncated_ip(ip: Column) -> Column:
    """IPv4 to its /24 (a.b.c.0), IPv6 to its /48 (its first three groups once `::` is
    expanded, then `::`), as GoAccess's --anonymize-ip does; anything else unchanged."""
    v6 = F.lower(F.trim(ip))
    halves = F.split(v6, "::", 2)
    none = F.array().cast("array<string>")
    head = F.when(halves[0] == "", none).otherwise(F.split(halves[0], ":"))
    tail = F.when((F.size(halves) < 2) | (halves[1] == ""), none).otherwise(F.split(halves[1], ":"))
    zeros = F.when(F.size(halves) == 2, 8 - F.size(head) - F.size(tail)).otherwise(0)
    groups = F.concat(head, F.array_repeat(F.lit("0"), F.greatest(zeros, F.lit(0))), tail)
    prefix = F.concat(F.concat_ws(":", F.slice(groups, 1, 3)), F.lit("::"))
    return (
        F.when(ip.rlike(_IPV4), F.regexp_replace(ip, r"\.[0-9]{1,3}$", ".0"))
        .when(ip.contains(":"), prefix)
        .otherwise(ip)
    )


# The two columns of hash_key_frame (RFC 2104's inner and outer keys); dropped by to_events.
HASH_INNER = "hash_inner_"
HASH_OUTER = "hash_outer_"
# Hex characters kept of a keyed hash: 16, i.e. its first 64 bits.
HASH_HEX_CHARS = 16
# SHA-256's block size in bytes: HMAC pads (or first hashes) its key to this length.
SHA256_BLOCK = 64


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """RFC 2104's inner and outer keys for HMAC-SHA256: the key (its SHA-256 digest when longer
    than a block), zero-padded to 64 bytes, XOR 0x36 and XOR 0x5c. Either one gives the key
    back, so both are as secret as the key."""
    if len(key) > SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    block = key.ljust(SHA256_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


def hash_key_frame(spark: SparkSession, key: bytes) -> DataFrame:
    """The hash key (config.hash_key) as a one-row DataFrame of its HMAC inner and outer keys
    (hmac_pads), binary columns HASH_INNER and HASH_OUTER.

    Broadcast and cross-joined, the key is data, not part of the query: a plan prints a
    Python-made DataFrame as its columns only (`Scan ExistingRDD[hash_inner_#3, ...]`),
    whereas `F.lit(...)` prints its bytes in every explain, the SQL UI, event logs and error
    messages.
    """
    inner, outer = hmac_pads(key)
    schema = f"{HASH_INNER} binary, {HASH_OUTER} binary"
    return spark.createDataFrame([(bytearray(inner), bytearray(outer))], schema)


def keyed_hash(value: Column, inner: Column, outer: Column) -> Column:
    """HMAC-SHA256 (RFC 2104) of the value's UTF-8 bytes, from the key's `inner` and `outer`
    keys (hmac_pads), as the first HASH_HEX_CHARS (16) lowercase hex characters of the MAC,
    i.e. its first 64 bits: `hmac.new(key, value.encode(), sha256).hexdigest()[:16]` in
    Python. Built from `sha2` (Spark's `hmac` function is new in 4.3; the stack is 4.2).
    Null and '-' (an access log's "none") stay as they are."""
    digest = F.unhex(F.sha2(F.concat(inner, F.encode(value, "UTF-8")), 256))
    mac = F.substring(F.sha2(F.concat(outer, digest), 256), 1, HASH_HEX_CHARS)
    return F.when(value.isNull() | (value == "-"), value).otherwise(mac)


def endpoint_dimension(spark: SparkSession, cfg: Config) -> DataFrame:
    """Endpoint attributes from the config, or from the CSV named in enrichment.endpoints_csv."""
    ddl = "endpoint string, service string, team string, latency_slo_ms double"
    if cfg.enrichment.endpoints_csv:
        return spark.read.csv(
            cfg.enrichment.endpoints_csv,
            header=True,
            schema=("template string, service string, team string, latency_slo_ms double"),
        ).withColumnRenamed("template", "endpoint")
    rows = [(e.template, e.service, e.team, e.latency_slo_ms) for e in cfg.endpoints]
    return spark.createDataFrame(rows, ddl)


def with_endpoint(cfg: Config) -> Callable[[DataFrame], DataFrame]:
    """Adds `endpoint`, the template of `path` (computed once per record, read by the events
    and the window partials)."""

    template: list[Column] = []  # built on first use, then reused by every batch

    def transform(df: DataFrame) -> DataFrame:
        if not template:
            template.append(
                endpoint_template(F.col("path"), cfg.enrichment.patterns, cfg.endpoints)
            )
        return df.withColumn("endpoint", template[0])

    return transform


def to_events(
    dimension: DataFrame,
    client_ip: str = "keep",
    api_key: str = "keep",
    hash_key: DataFrame | None = None,
) -> Callable[[DataFrame], DataFrame]:
    """Valid records with `endpoint` and the key hashes -> rows of the events lake
    (EVENTS_DDL), the endpoint dimension broadcast. Client IPs are truncated when `client_ip`
    is "truncate" (enrichment.client_ip); client IPs and api keys are replaced by their
    keyed_hash when `client_ip` / `api_key` is "hash" (enrichment.api_key), under the key
    of `hash_key` (hash_key_frame), broadcast."""
    hashing = "hash" in (client_ip, api_key)
    if hashing and hash_key is None:
        raise ValueError("hashing client_ip or api_key needs the hash_key frame")

    built: list[list[Column | str]] = []  # the columns, built on first use, then reused

    def columns() -> list[Column | str]:
        key = (F.col(HASH_INNER), F.col(HASH_OUTER))
        ip = F.col("client_ip")
        if client_ip == "truncate":
            ip = truncated_ip(ip)
        elif client_ip == "hash":
            ip = keyed_hash(ip, *key)
        caller = keyed_hash(F.col("api_key"), *key) if api_key == "hash" else F.col("api_key")
        return [
            "request_id",
            "event_time",
            "method",
            "path",
            "endpoint",
            F.col("status_code").alias("status"),
            status_class(F.col("status_code")).alias("status_class"),
            F.col("latency").alias("latency_ms"),
            F.col("nbytes").alias("bytes_sent"),
            ip.alias("client_ip"),
            "user_agent",
            caller.alias("api_key"),
            "ingest_time",
            "source_file",
            *KEY_HASHES,
            F.date_format("event_time", "yyyy-MM-dd").alias("date"),
            F.hour("event_time").alias("hour"),
        ]

    def transform(df: DataFrame) -> DataFrame:
        if not built:
            built.append(columns())
        if hashing:
            df = df.crossJoin(F.broadcast(hash_key))
        joined = df.select(*built[0]).join(F.broadcast(dimension), on="endpoint", how="left")
        return joined.select(*EVENT_COLUMNS)

    return transform


def to_quarantine(df: DataFrame) -> DataFrame:
    """Parsed records with a reason -> rows of the quarantine (QUARANTINE_DDL: raw text kept,
    and the exact bytes of a line that is not UTF-8)."""
    dated = df.withColumn("ingest_date", F.date_format("ingest_time", "yyyy-MM-dd"))
    return dated.select(*QUARANTINE_COLUMNS)
