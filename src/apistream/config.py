"""Typed, immutable configuration: YAML file, then APISTREAM_* environment, then CLI flags.

Validated once at start-up; a bad key or value raises ConfigError naming it, before Spark starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from apistream.errors import ConfigError
from apistream.fields import RAW_FIELDS
from apistream.ingest.formats import ACCESS_LOG_FORMATS, compile_format, is_access_log
from apistream.reasons import DEFECT_KINDS

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "config.yaml"
ENV_PREFIX = "APISTREAM_"

_UNITS = {
    "ms": 0.001,
    "millisecond": 0.001,
    "milliseconds": 0.001,
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")


def parse_duration(value: Any, allow_zero: bool = False) -> float:
    """Seconds from '90 seconds', '2 minutes', '1h', '500ms' or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '1 minute'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).lower())
        if not match or match.group(2) not in _UNITS:
            raise ValueError(f"{value!r} is not a duration such as '30 seconds' or '2 minutes'")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError("a duration must be positive" + (" or 0" if allow_zero else ""))
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
# 0 allowed: a trigger interval of 0 starts each micro-batch as soon as the previous one ends.
Interval = Annotated[float, BeforeValidator(lambda v: parse_duration(v, allow_zero=True))]


def spark_interval(seconds: float) -> str:
    """A Spark interval string ('120 seconds', '1500 milliseconds') for a duration."""
    if float(seconds).is_integer():
        return f"{int(seconds)} seconds"
    return f"{round(seconds * 1000)} milliseconds"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LatencyProfile(_Model):
    """Log-normal latency: median in ms and sigma of the underlying normal."""

    median_ms: float = Field(gt=0)
    sigma: float = Field(default=0.5, gt=0, le=3)


class Endpoint(_Model):
    """One API endpoint: the dimension row (service, team, SLO) and its traffic profile."""

    template: str
    methods: dict[str, float] = Field(default_factory=lambda: {"GET": 1.0})
    weight: float = Field(default=1.0, gt=0)
    latency: LatencyProfile = LatencyProfile(median_ms=50)
    error_rate_4xx: float = Field(default=0.02, ge=0, le=1)
    error_rate_5xx: float = Field(default=0.005, ge=0, le=1)
    bytes_median: int = Field(default=1500, ge=0)
    service: str | None = None
    team: str | None = None
    latency_slo_ms: float | None = Field(default=None, gt=0)

    @field_validator("template")
    @classmethod
    def _starts_with_slash(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("an endpoint template starts with '/'")
        return v

    @field_validator("methods")
    @classmethod
    def _positive_weights(cls, v: dict[str, float]) -> dict[str, float]:
        if not v or any(w <= 0 for w in v.values()):
            raise ValueError("methods map each HTTP method to a positive weight")
        return {k.upper(): w for k, w in v.items()}

    @model_validator(mode="after")
    def _rates(self) -> Endpoint:
        if self.error_rate_4xx + self.error_rate_5xx > 1:
            raise ValueError("error_rate_4xx + error_rate_5xx must not exceed 1")
        return self


# Requests slowed by a slow_dependency incident: p99 rises, p50 hardly moves.
SLOW_DEPENDENCY_SHARE = 0.03


@dataclass(frozen=True)
class IncidentKind:
    """A kind of incident the generator plants, and the metric it should move.

    `default_factor` is used by random incidents and by explicit ones without a factor;
    `duration_s` fixes a random incident's length (else min..max_duration_s); a `by_method`
    kind hits one method of its endpoint (the incident's `method`).
    """

    name: str
    default_factor: float
    metric: str
    description: str
    duration_s: float | None = None
    by_method: bool = False


INCIDENT_KIND_TABLE: dict[str, IncidentKind] = {
    k.name: k
    for k in (
        IncidentKind("latency_spike", 5.0, "latency_p95_ms", "every latency x factor"),
        IncidentKind("error_burst", 5.0, "error_rate_5xx", "5xx rate min(0.95, 0.08 x factor)"),
        IncidentKind("traffic_drop", 1 / 0.7, "requests", "requests / factor (default -30%)"),
        IncidentKind("traffic_spike", 5.0, "requests", "requests x factor"),
        IncidentKind(
            "latency_creep",
            1.5,
            "latency_p95_ms",
            "latency x 1 at the start, rising linearly to x factor at the end",
            duration_s=1800,
        ),
        IncidentKind("error_rise", 4.0, "error_rate_5xx", "5xx rate x factor"),
        IncidentKind(
            "method_outage",
            0.9,
            "error_rate_5xx",
            "a share min(factor, 1) of one method's requests get a 503",
            by_method=True,
        ),
        IncidentKind(
            "slow_dependency",
            6.0,
            "latency_p99_ms",
            f"{SLOW_DEPENDENCY_SHARE:.0%} of the requests x factor",
        ),
    )
}
INCIDENT_KINDS = tuple(INCIDENT_KIND_TABLE)


def _known_kind(kind: str) -> str:
    if kind not in INCIDENT_KIND_TABLE:
        raise ValueError(f"unknown incident kind {kind!r} (one of {', '.join(INCIDENT_KINDS)})")
    return kind


IncidentKindName = Annotated[str, AfterValidator(_known_kind)]


class Incident(_Model):
    """A span of abnormal behaviour on one endpoint; offsets are seconds from the run's start.

    Without a factor the kind's default applies; `method` names the method a method_outage
    takes down (and is for that kind only).
    """

    kind: IncidentKindName
    endpoint: str
    start_offset_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    factor: float | None = Field(default=None, gt=0)
    method: str | None = None

    @field_validator("method")
    @classmethod
    def _upper(cls, v: str | None) -> str | None:
        return None if v is None else v.upper()

    @model_validator(mode="after")
    def _method_for_its_kind(self) -> Incident:
        by_method = INCIDENT_KIND_TABLE[self.kind].by_method
        if by_method and self.method is None:
            raise ValueError(f"a {self.kind} incident needs a method")
        if not by_method and self.method is not None:
            raise ValueError(f"method is only for method_outage, not {self.kind}")
        return self

    @property
    def resolved_factor(self) -> float:
        """The factor, or the kind's default."""
        return INCIDENT_KIND_TABLE[self.kind].default_factor if self.factor is None else self.factor


class IncidentPlan(_Model):
    """Incidents placed at random (deterministic for the seed) plus any listed explicitly."""

    random_count: int = Field(default=3, ge=0)
    min_duration_s: float = Field(default=120, gt=0)
    max_duration_s: float = Field(default=300, gt=0)
    kinds: tuple[IncidentKindName, ...] = Field(default=INCIDENT_KINDS, min_length=1)
    explicit: tuple[Incident, ...] = ()


# Share of generated lines turned into each kind of bad record (generator.defects): one rate
# per reason the generator plants (reasons.DEFECT_KINDS); malformed JSON, missing fields and
# wrong types are the commonest in real feeds.
_DEFAULT_DEFECT_RATE = {"malformed_json": 0.002, "missing_field": 0.002, "wrong_type": 0.002}
Defects = create_model(
    "Defects",
    __base__=_Model,
    __doc__="Share of generated lines turned into each kind of bad record.",
    **{
        kind: (float, Field(default=_DEFAULT_DEFECT_RATE.get(kind, 0.001), ge=0, le=0.1))
        for kind in DEFECT_KINDS
    },
)


class GeneratorConfig(_Model):
    """Synthetic API traffic: volume, shape, injected defects and incidents."""

    seed: int = 42
    mode: Literal["backfill", "live"] = "backfill"
    events: int = Field(default=100_000, gt=0)
    rate: float = Field(default=1000, gt=0)
    start: str | None = None
    events_per_file: int = Field(default=20_000, ge=100)
    users: int = Field(default=5000, ge=1)
    daily_amplitude: float = Field(default=0.3, ge=0, lt=1)
    defects: Defects = Defects()
    duplicate_rate: float = Field(default=0.005, ge=0, le=0.2)
    late_within_rate: float = Field(default=0.003, ge=0, le=0.2)
    late_beyond_rate: float = Field(default=0.002, ge=0, le=0.2)
    incidents: IncidentPlan = IncidentPlan()


_SECRET_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
KAFKA_CONNECTOR = "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0"


def resolve_secrets(options: dict[str, str], key: str, environ: dict[str, str]) -> dict[str, str]:
    """Options with every `${NAME}` replaced by the environment variable NAME.

    The result holds secrets: pass it to the client, never print or log it.
    """
    out = {}
    for name, value in options.items():
        missing = [v for v in _SECRET_REF.findall(value) if v not in environ]
        if missing:
            raise ConfigError(
                f"invalid configuration: {key}.{name}: environment variable {missing[0]} is not set"
            )
        out[name] = _SECRET_REF.sub(lambda m: environ[m.group(1)], value)
    return out


class KafkaSourceConfig(_Model):
    """A Kafka topic of JSON lines: where it is, how fast to read it, client options."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "api-requests"
    partitions: int = Field(default=3, ge=1)
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int = Field(default=200_000, ge=1)
    fail_on_data_loss: bool = True
    connect_timeout: Duration = 15.0
    options: dict[str, str] = Field(default_factory=dict)
    client_options: dict[str, str] = Field(default_factory=dict)
    connector: str = KAFKA_CONNECTOR

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, v: str) -> str:
        hosts = [h.strip() for h in v.split(",")]
        if not all(re.match(r"^[^\s:/]+:\d+$", h) for h in hosts):
            raise ValueError(f"{v!r} is not host:port[,host:port...] such as 'broker1:9092'")
        return ",".join(hosts)

    @field_validator("starting_offsets")
    @classmethod
    def _offsets(cls, v: str) -> str:
        if v not in ("earliest", "latest") and not v.lstrip().startswith("{"):
            raise ValueError("use earliest, latest or a JSON map of topic partitions to offsets")
        return v

    @field_validator("options", "client_options", mode="before")
    @classmethod
    def _stringify(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        return {
            str(k).removeprefix("kafka."): str(x).lower() if isinstance(x, bool) else str(x)
            for k, x in v.items()
        }

    @field_validator("connector")
    @classmethod
    def _coordinates(cls, v: str) -> str:
        if not re.match(r"^[\w.\-]+:[\w.\-]+:[\w.\-]+$", v):
            raise ValueError(f"{v!r} is not Maven coordinates group:artifact:version")
        return v


class SourceConfig(_Model):
    """Where the stream reads from: JSON-lines files (format json) or a Kafka topic."""

    format: Literal["json", "kafka"] = "json"
    path: str = "data/incoming"
    glob: str = "*.{jsonl,jsonl.gz,jsonl.bz2}"
    max_files_per_trigger: int = Field(default=10, ge=1)
    kafka: KafkaSourceConfig = KafkaSourceConfig()


class ProcessingConfig(_Model):
    """Event-time windows, watermark and trigger cadence."""

    window: Duration = 60.0
    watermark: Duration = 120.0
    trigger_interval: Interval = 1.0


class ValidationConfig(_Model):
    """Limits for the record validation rules."""

    methods: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
    status_min: int = 100
    status_max: int = 599
    max_latency_ms: float = Field(default=300_000, gt=0)
    # A longer line is quarantined as line_too_long, its first RAW_KEEP_CHARS characters kept.
    max_line_bytes: int = Field(default=1_048_576, ge=1024)
    max_future: Duration = 3600.0
    max_age: Duration | None = 30 * 86400.0

    @field_validator("methods")
    @classmethod
    def _upper(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one method must be allowed")
        return tuple(m.upper() for m in v)

    @model_validator(mode="after")
    def _status_range(self) -> ValidationConfig:
        if not 0 <= self.status_min < self.status_max:
            raise ValueError("status_min must be below status_max")
        return self


class TemplatePattern(_Model):
    """A regex over the path and the endpoint template it maps to."""

    regex: str
    template: str

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regex: {exc}") from exc
        return v


DEFAULT_HASH_KEY_ENV = "APISTREAM_HASH_KEY"
MIN_HASH_KEY_CHARS = 16
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EnrichmentConfig(_Model):
    """Endpoint templating, the endpoint dimension and what the lake keeps of the caller."""

    patterns: tuple[TemplatePattern, ...] = ()
    endpoints_csv: str | None = None
    # truncate: IPv4 to its /24, IPv6 to its /48 before the lake (GoAccess's --anonymize-ip);
    # hash: a keyed hash (enrich.keyed_hash) instead of the address.
    client_ip: Literal["keep", "truncate", "hash"] = "keep"
    # hash: a keyed hash of the api key (the caller id) instead of the key.
    api_key: Literal["keep", "hash"] = "keep"
    # The environment variable holding the hash key; the key itself is never a config value.
    hash_key_env: str = DEFAULT_HASH_KEY_ENV
    # The quarantine's copy of each bad line (`raw`, `raw_bytes`) holds the caller's address
    # and key as they came. auto: dropped (null) when client_ip or api_key is not "keep".
    quarantine_raw: Literal["auto", "keep", "drop"] = "auto"

    @field_validator("hash_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not _ENV_NAME.match(v):
            raise ValueError(f"{v!r} is not an environment variable name")
        return v

    @property
    def keeps_raw(self) -> bool:
        """Whether quarantined lines are stored as they came."""
        if self.quarantine_raw == "auto":
            return self.client_ip == "keep" and self.api_key == "keep"
        return self.quarantine_raw == "keep"

    @property
    def hashes(self) -> bool:
        """Whether a column is stored as its keyed hash (so a hash key is needed)."""
        return self.client_ip == "hash" or self.api_key == "hash"


def hash_key(enrichment: EnrichmentConfig, environ: Mapping[str, str]) -> bytes | None:
    """The key of the keyed hashes (UTF-8 bytes of the variable named by
    enrichment.hash_key_env), or None when nothing is hashed.

    Raises ConfigError naming the key and the variable (never its value) when a hash is
    configured and the variable is unset or shorter than MIN_HASH_KEY_CHARS characters.
    The result is a secret: pass it to Spark only as data (enrich.hash_key_frame), never
    print, log or inline it as a literal.
    """
    if not enrichment.hashes:
        return None
    name = enrichment.hash_key_env
    value = environ.get(name)
    if value is not None and len(value) >= MIN_HASH_KEY_CHARS:
        return value.encode()
    problem = "is not set" if value is None else f"is shorter than {MIN_HASH_KEY_CHARS} characters"
    hashed = "/".join(k for k in ("client_ip", "api_key") if getattr(enrichment, k) == "hash")
    raise ConfigError(
        f"invalid configuration: enrichment.hash_key_env: environment variable {name} {problem} "
        f"(enrichment.{hashed}: hash needs a secret key of at least {MIN_HASH_KEY_CHARS} "
        "characters)"
    )


class LogsConfig(_Model):
    """What the input lines are: the generator's JSON, an access-log format, or mapped JSON."""

    format: Literal[("json", *ACCESS_LOG_FORMATS, "json_mapped")] = "json"
    log_format: str | None = None
    timezone: str = "UTC"
    json_fields: dict[str, str] = Field(default_factory=dict)
    json_latency_unit: Literal["ms", "s", "us"] = "ms"

    @model_validator(mode="after")
    def _compiles(self) -> LogsConfig:
        if is_access_log(self.format):
            try:
                compile_format(self.format, self.log_format, self.timezone)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        if self.format == "json_mapped":
            unknown = set(self.json_fields) - set(RAW_FIELDS)
            if unknown:
                raise ValueError(f"json_fields: unknown event fields {sorted(unknown)}")
            missing = {"timestamp", "path", "status"} - set(self.json_fields)
            if missing:
                raise ValueError(f"json_fields must map {sorted(missing)}")
            bad = [p for p in self.json_fields.values() if not p.startswith("$")]
            if bad:
                raise ValueError(f"json_fields values are JSON paths like '$.a.b', not {bad}")
        return self


class ForecastConfig(_Model):
    """The MLlib forecast detector (forecast.py): where its model is, how it is fitted."""

    model: str = "models/forecast"
    k: float = Field(default=5.0, gt=0)
    trees: int = Field(default=30, ge=1, le=500)
    depth: int = Field(default=5, ge=1, le=15)


class AnomalyConfig(_Model):
    """Detectors, baselines and thresholds of anomaly detection (see docs/design.md)."""

    detectors: tuple[Literal["ewma", "forecast"], ...] = Field(default=("ewma",), min_length=1)
    k: float = Field(default=4.5, gt=0)
    baseline_windows: int = Field(default=20, ge=2)
    slow_baseline_windows: int = Field(default=360, ge=2)
    min_baseline_windows: int = Field(default=10, ge=1)
    min_requests: int = Field(default=20, ge=1)
    min_tail_requests: int = Field(default=10, ge=1)
    min_latency_increase: float = Field(default=0.5, ge=0)
    latency_drift: float = Field(default=0.25, gt=0)
    min_error_rate_increase: float = Field(default=0.003, ge=0, le=1)
    min_error_rate_ratio: float = Field(default=2.0, ge=1)
    traffic_spike_ratio: float = Field(default=1.5, gt=1)
    traffic_drop_ratio: float = Field(default=0.8, gt=0, lt=1)
    forecast: ForecastConfig = ForecastConfig()


class SloConfig(_Model):
    """SLO targets of the batch report; the latency threshold is each endpoint's SLO."""

    latency_target: float = Field(default=0.95, gt=0, le=1)
    availability_target: float = Field(default=0.995, gt=0, le=1)
    default_latency_slo_ms: float = Field(default=500, gt=0)


def is_remote(uri: str) -> bool:
    """A URI of a file system other than the local one (s3a://, gs://, hdfs://, ...)."""
    scheme = urlparse(uri).scheme
    return len(scheme) > 1 and scheme != "file"


class SinkConfig(_Model):
    """Where results land: the lake and the checkpoints under `output`; the SQLite database
    under it too, or at an absolute local path (required when `output` is not local: SQLite
    is a file on the driver's own disk)."""

    output: str = "output"
    sqlite_file: str = "analytics.db"

    @model_validator(mode="after")
    def _sqlite_is_local(self) -> SinkConfig:
        if is_remote(self.output) and not PurePosixPath(self.sqlite_file).is_absolute():
            raise ValueError(
                f"sqlite_file must be an absolute local path when output is not local "
                f"({self.output}): the SQLite database is a file on the driver's disk"
            )
        return self


class SparkConfig(_Model):
    """SparkSession settings; `conf` is passed through to Spark as is."""

    master: str = "local[*]"
    app_name: str = "apistream"
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "ERROR"
    shuffle_partitions: int = Field(default=4, ge=1)
    conf: dict[str, str] = Field(default_factory=dict)


class DashboardConfig(_Model):
    """The live dashboard (`apistream dashboard`): where it listens and how it refreshes."""

    host: str = "127.0.0.1"
    port: int = Field(default=8050, ge=0, le=65535)
    # Host headers the dashboard answers (DNS-rebinding guard); empty = localhost names and
    # `host` itself. "*" answers any.
    allowed_hosts: list[str] = Field(default_factory=list)
    refresh: Duration = 3.0
    recent: Duration = 300.0
    history_windows: int = Field(default=120, ge=1)


class ReportConfig(_Model):
    """Views shared by the report, the notebook and the dashboard."""

    top_n: int = Field(default=10, ge=1)
    # Endpoints with fewer requests over the whole run are left out of the report's top-N.
    min_requests: int = Field(default=100, ge=0)
    # An endpoint x method row of one window or day with fewer requests is not ranked
    # (`apistream top`, the batch summary, the endpoint_rankings view).
    min_ranked_requests: int = Field(default=20, ge=0)


class Webhook(_Model):
    """Where anomalies are posted: a generic JSON body, or a Slack-compatible `text` one."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")  # in logs and alert_deliveries, not the URL
    # http(s)://...; may be or hold ${ENV_VAR} (a Slack webhook URL is a secret)
    url: str
    format: Literal["json", "slack"] = "json"
    min_severity: Literal["warning", "critical"] = "warning"

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not (v.startswith(("http://", "https://")) or v.startswith("${")):
            raise ValueError("must start with http:// or https:// (or be ${ENV_VAR})")
        return v


class AlertsConfig(_Model):
    """Delivery of anomalies to webhooks: retried with backoff, at most once each per webhook
    across restarts (alert_deliveries in SQLite), rate-limited."""

    webhooks: tuple[Webhook, ...] = ()
    max_per_minute: int = Field(default=30, ge=1)  # per webhook; the rest wait their turn
    max_attempts: int = Field(default=8, ge=1)
    backoff: Duration = 2.0  # before the 2nd attempt; doubles each time, at most 5 minutes
    timeout: Duration = 5.0

    @field_validator("webhooks")
    @classmethod
    def _unique(cls, v: tuple[Webhook, ...]) -> tuple[Webhook, ...]:
        names = [w.name for w in v]
        if len(names) != len(set(names)):
            raise ValueError("webhook names must be unique")
        return v


class MetricsConfig(_Model):
    """Prometheus `/metrics` of `apistream stream` (read from the SQLite database)."""

    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=0, le=65535)  # None: not served; 0: any free


MEMORY = r"^[1-9][0-9]*[kmgt]$"  # Spark's memory sizes: 512m, 4g


class DeploySize(_Model):
    """Executors of a cluster deployment (spark.executor.*) and the driver's memory."""

    executors: int = Field(default=2, ge=1)
    executor_cores: int = Field(default=2, ge=1)
    executor_memory: str = Field(default="4g", pattern=MEMORY)
    driver_memory: str = Field(default="4g", pattern=MEMORY)


class DataprocDeploy(_Model):
    """A Dataproc cluster (on Compute Engine) the job is submitted to."""

    project: str | None = None
    region: str = "us-central1"
    cluster: str = "apistream"
    image_version: str | None = None  # a Dataproc image whose Spark is pyspark's version


class EmrDeploy(_Model):
    """An EMR cluster (on EC2) the job runs on as steps."""

    cluster_id: str | None = None  # j-XXXXXXXX
    region: str = "us-east-1"


class DatabricksDeploy(_Model):
    """A Databricks job: a Databricks Runtime with this Spark version, on a new job cluster."""

    spark_version: str | None = None  # e.g. the runtime key whose Spark is 4.2
    node_type_id: str | None = None  # e.g. i3.xlarge, Standard_DS3_v2, n2-standard-4


class K8sDeploy(_Model):
    """Spark on Kubernetes: an image with the package installed, the SQLite file on a claim."""

    master: str = "k8s://https://kubernetes.default.svc:443"
    namespace: str = "spark"
    image: str | None = None  # built from deploy/k8s/Dockerfile
    service_account: str = "spark"
    sqlite_claim: str = "apistream-sqlite"  # PersistentVolumeClaim mounted for sinks.sqlite_file


class DeployConfig(_Model):
    """`apistream deploy`: where the package and config are uploaded, sizes, and each target's
    identity. Lake and checkpoints are sinks.output; the SQLite file is sinks.sqlite_file."""

    # Where the package is uploaded: gs:// (Dataproc), s3:// (EMR), dbfs:/ or /Volumes/
    # (Databricks); Kubernetes uses an image instead.
    artifacts: str | None = None
    size: DeploySize = DeploySize()
    dataproc: DataprocDeploy = DataprocDeploy()
    emr: EmrDeploy = EmrDeploy()
    databricks: DatabricksDeploy = DatabricksDeploy()
    k8s: K8sDeploy = K8sDeploy()


class Config(_Model):
    """The whole configuration."""

    generator: GeneratorConfig = GeneratorConfig()
    endpoints: tuple[Endpoint, ...]
    source: SourceConfig = SourceConfig()
    processing: ProcessingConfig = ProcessingConfig()
    validation: ValidationConfig = ValidationConfig()
    enrichment: EnrichmentConfig = EnrichmentConfig()
    logs: LogsConfig = LogsConfig()
    anomaly: AnomalyConfig = AnomalyConfig()
    slo: SloConfig = SloConfig()
    sinks: SinkConfig = SinkConfig()
    metrics: MetricsConfig = MetricsConfig()
    alerts: AlertsConfig = AlertsConfig()
    spark: SparkConfig = SparkConfig()
    dashboard: DashboardConfig = DashboardConfig()
    report: ReportConfig = ReportConfig()
    deploy: DeployConfig = DeployConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        templates = [e.template for e in self.endpoints]
        if len(set(templates)) != len(templates):
            raise ValueError("endpoints: templates must be unique")
        for inc in self.generator.incidents.explicit:
            if inc.endpoint not in templates:
                raise ValueError(f"generator.incidents.explicit: unknown endpoint {inc.endpoint!r}")
            methods = self.endpoints[templates.index(inc.endpoint)].methods
            if inc.method is not None and len(methods) < 2:
                raise ValueError(
                    f"generator.incidents.explicit: {inc.kind} needs an endpoint with two or "
                    f"more methods; {inc.endpoint} has only {', '.join(methods)}"
                )
            if inc.method is not None and inc.method not in methods:
                raise ValueError(
                    f"generator.incidents.explicit: {inc.endpoint} has no method {inc.method!r}"
                    f" (its methods: {', '.join(methods)})"
                )
        for ep in self.endpoints:
            bad = set(ep.methods) - set(self.validation.methods)
            if bad:
                raise ValueError(f"endpoints: {ep.template} uses methods not allowed {sorted(bad)}")
        return self

    def path(self, *parts: str) -> str:
        """A path under the output root."""
        return "/".join([self.sinks.output.rstrip("/"), *parts])

    @property
    def sqlite_path(self) -> str:
        """The SQLite database: sinks.sqlite_file, under the output root unless absolute."""
        if PurePosixPath(self.sinks.sqlite_file).is_absolute():
            return self.sinks.sqlite_file
        return self.path(self.sinks.sqlite_file)

    @property
    def forecast_model_path(self) -> str:
        """The forecast detector's model: anomaly.forecast.model, under the output root
        unless it is absolute or a URI (Spark reads and writes it: s3a://, gs://, ...)."""
        model = self.anomaly.forecast.model
        own = PurePosixPath(model).is_absolute() or is_remote(model)
        return model if own else self.path(model)


def _set_path(tree: dict[str, Any], dotted: list[str], value: Any) -> None:
    node = tree
    for key in dotted[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config key {'.'.join(dotted)}: {key} is not a section")
    node[dotted[-1]] = value


# Short names for the two paths everyone sets, the same as --input and --output.
ENV_ALIASES = {"APISTREAM_INPUT": ["source", "path"], "APISTREAM_OUTPUT": ["sinks", "output"]}


def env_overrides(
    environ: Mapping[str, str], skip: frozenset[str] = frozenset()
) -> list[tuple[list[str], Any]]:
    """APISTREAM_PROCESSING__WINDOW='5 minutes' -> (['processing', 'window'], '5 minutes');
    APISTREAM_OUTPUT and APISTREAM_INPUT are short for sinks.output and source.path. The
    variables in `skip` (the hash key's) are secrets, not config values."""
    out = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == "APISTREAM_CONFIG" or name in skip:
            continue
        if name in ENV_ALIASES:
            out.append((ENV_ALIASES[name], raw))
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
        out.append((keys, _env_value(raw)))
    return out


def _env_value(raw: str) -> Any:
    """An environment value read as YAML (numbers, lists, true/false), or as the plain text
    when it is no valid YAML (e.g. a glob such as '*.gz', which YAML takes for an alias)."""
    if raw == "":
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _format_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Load YAML, apply APISTREAM_* env then dotted-key overrides (a None value is YAML's
    null: `{"validation.max_age": None}` turns that check off), validate into a Config."""
    environ = dict(os.environ) if environ is None else environ
    path = Path(path or environ.get("APISTREAM_CONFIG") or DEFAULT_CONFIG)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    for keys, value in env_overrides(environ, _hash_key_envs(tree, environ, overrides)):
        _set_path(tree, keys, value)
    for dotted, value in (overrides or {}).items():
        _set_path(tree, dotted.split("."), value)  # None sets null, as in the YAML
    try:
        cfg = Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, str(path))) from None
    hash_key(cfg.enrichment, environ)  # fails fast when a hash has no key
    return cfg


def _hash_key_envs(
    tree: dict[str, Any], environ: Mapping[str, str], overrides: dict[str, Any] | None
) -> frozenset[str]:
    """Every name enrichment.hash_key_env may get (default, file, environment, override): an
    APISTREAM_* hash key variable is no config override."""
    section = tree.get("enrichment")
    names = {
        DEFAULT_HASH_KEY_ENV,
        section.get("hash_key_env") if isinstance(section, dict) else None,
        environ.get(f"{ENV_PREFIX}ENRICHMENT__HASH_KEY_ENV"),
        (overrides or {}).get("enrichment.hash_key_env"),
    }
    return frozenset(n for n in names if isinstance(n, str))
