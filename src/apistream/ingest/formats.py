"""Access-log formats compiled once into a regex and a field mapping (plain Python, no Spark).

nginx `log_format` strings ($variables) and Apache `LogFormat` strings (%directives) are turned
into one anchored regex with a capture group per variable, and each variable into a role
(timestamp, request line, status, latency in some unit, ...). AWS ALB and HAProxy `httplog`
have fixed layouts. Each CompiledFormat also says which field holds the event time and how to
read it (TimeSpec), and which fields hold the latency and in what unit (LatencySpec), so that
pipeline/parse_access.py turns any of them into Spark expressions without knowing the format.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from apistream.errors import ConfigError

# Roles a captured field can play in the event schema.
TIME_CLF = "time_clf"  # 17/May/2015:10:05:03 +0000
TIME_ISO = "time_iso"
TIME_EPOCH = "time_epoch"  # seconds, e.g. nginx $msec
REQUEST_LINE = "request_line"  # GET /path HTTP/1.1
METHOD, PATH, STATUS = "method", "path", "status"
BYTES, BYTES_DASH_ZERO = "bytes", "bytes_dash_zero"  # Apache %b writes '-' for zero
LATENCY_S, LATENCY_MS, LATENCY_US = "latency_s", "latency_ms", "latency_us"
UPSTREAM_LATENCY_S = "upstream_latency_s"  # nginx $upstream_response_time
CLIENT_IP, CLIENT_IP_PORT = "client_ip", "client_ip_port"
USER_AGENT, REQUEST_ID, API_KEY = "user_agent", "request_id", "api_key"

Unit = Literal["s", "ms", "us"]
MS_PER_UNIT: dict[str, float] = {"s": 1000.0, "ms": 1.0, "us": 0.001}
CLF_TIME_PATTERN = "dd/MMM/yyyy:HH:mm:ss Z"  # a Spark datetime pattern

PRESETS = {
    "nginx": {
        "combined": '$remote_addr - $remote_user [$time_local] "$request" $status '
        '$body_bytes_sent "$http_referer" "$http_user_agent"',
        "combined_rt": '$remote_addr - $remote_user [$time_local] "$request" $status '
        '$body_bytes_sent "$http_referer" "$http_user_agent" $request_time',
    },
    "apache": {
        "common": '%h %l %u %t "%r" %>s %b',
        "combined": '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"',
    },
}

NGINX_ROLES = {
    "remote_addr": CLIENT_IP,
    "time_local": TIME_CLF,
    "time_iso8601": TIME_ISO,
    "msec": TIME_EPOCH,
    "request": REQUEST_LINE,
    "request_method": METHOD,
    "request_uri": PATH,
    "uri": PATH,
    "status": STATUS,
    "body_bytes_sent": BYTES,
    "bytes_sent": BYTES,
    "request_time": LATENCY_S,
    "upstream_response_time": UPSTREAM_LATENCY_S,
    "http_user_agent": USER_AGENT,
    "request_id": REQUEST_ID,
    "http_x_request_id": REQUEST_ID,
    "http_x_api_key": API_KEY,
}
APACHE_ROLES = {
    "h": CLIENT_IP,
    "a": CLIENT_IP,
    "t": TIME_CLF,
    "r": REQUEST_LINE,
    ">s": STATUS,
    "s": STATUS,
    "b": BYTES_DASH_ZERO,
    "B": BYTES,
    "D": LATENCY_US,
    "T": LATENCY_S,
    "{ms}T": LATENCY_MS,
    "{us}T": LATENCY_US,
    "{s}T": LATENCY_S,
    "m": METHOD,
    "U": PATH,
    "{user-agent}i": USER_AGENT,
    "{x-request-id}i": REQUEST_ID,
    "{unique_id}e": REQUEST_ID,
    "{x-api-key}i": API_KEY,
}

# Field patterns. java.util.regex (Spark's regexp_extract and rlike) runs a greedy or lazy
# `*`/`+` over a group of varying length, like `(?:[^"\\]|\\.)*`, by recursing once per
# iteration: a quoted field of ~1,500 characters overflowed the task's stack and killed the JVM.
# So every repeat here is either of one character class (a loop in Java) or possessive (`*+`,
# also a loop). QUOTED is the unrolled form, one group iteration per escape, not per character;
# possessive does not change what it matches, as a quoted field can only end at its first
# unescaped quote. Python's `re` takes the same syntax (3.11+).
QUOTED = r'([^"\\]*+(?:\\.[^"\\]*+)*+)'
BRACKETED = r"([^\]]*+)"
TOKEN = r"(\S+)"  # not possessive: `$a:$b` needs the first token to give back ':'


@dataclass(frozen=True)
class TimeSpec:
    """Which captured field holds the event time, and how it is written."""

    role: str
    kind: Literal["pattern", "iso", "epoch"]  # iso: ISO-8601 (or an epoch number, leniently)
    pattern: str = ""  # the Spark datetime pattern of kind "pattern"
    local: bool = False  # no offset in the text: it is in CompiledFormat.timezone


@dataclass(frozen=True)
class LatencySpec:
    """Which captured fields hold the latency (summed), their unit and their 'absent' value."""

    roles: tuple[str, ...]
    unit: Unit
    raw: str  # the field kept as the raw latency text
    absent: str | None = None  # in any of the fields, it means no latency (e.g. "-1")


# A format string's time variables, first one present wins; and its latency ones.
TIME_SPECS = (
    TimeSpec(TIME_CLF, "pattern", CLF_TIME_PATTERN),
    TimeSpec(TIME_ISO, "iso"),
    TimeSpec(TIME_EPOCH, "epoch"),
)
LATENCY_UNITS: tuple[tuple[str, Unit], ...] = (
    (LATENCY_US, "us"),
    (LATENCY_MS, "ms"),
    (LATENCY_S, "s"),
    (UPSTREAM_LATENCY_S, "s"),
)


@dataclass(frozen=True)
class CompiledFormat:
    """An anchored (Java-compatible) regex, per capture group (1-based) its role, where the
    event time is and where the latency is (None: the format has none)."""

    name: str
    regex: str
    roles: dict[str, int]
    time: TimeSpec
    latency: LatencySpec | None = None
    timezone: str = "UTC"

    def has(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Dialect:
    """How a family of format strings names its variables: each one's role, and the regex of
    those that write their own delimiters (Apache %t writes the brackets)."""

    name: str
    roles: Mapping[str, str]
    patterns: Mapping[str, str] = field(default_factory=dict)

    def role(self, var: str) -> str | None:
        return self.roles.get(var) or self.roles.get(var.lower())


NGINX = Dialect("nginx", NGINX_ROLES)
APACHE = Dialect("apache", APACHE_ROLES, {"t": rf"\[{BRACKETED}\]"})


def _group_pattern(literal_before: str, literal_after: str) -> str:
    if literal_before.endswith('"') and literal_after.startswith('"'):
        return QUOTED
    if literal_before.endswith("[") and literal_after.startswith("]"):
        return BRACKETED
    return TOKEN


def _latency_spec(roles: Mapping[str, int]) -> LatencySpec | None:
    """The first latency field the format has, in LATENCY_UNITS order."""
    for role, unit in LATENCY_UNITS:
        if role in roles:
            return LatencySpec(roles=(role,), unit=unit, raw=role)
    return None


def _compile(dialect: Dialect, parts: list[tuple[str, str | None]]) -> CompiledFormat:
    """parts: (literal, variable-or-None) pairs in order."""
    name = dialect.name
    regex, roles, group = "^", {}, 0
    for i, (literal, var) in enumerate(parts):
        regex += re.escape(literal)
        if var is None:
            continue
        after = parts[i + 1][0] if i + 1 < len(parts) else ""
        group += 1
        regex += dialect.patterns.get(var) or _group_pattern(literal, after)
        role = dialect.role(var)
        if role and role not in roles:
            roles[role] = group
    if STATUS not in roles:
        raise ConfigError(f"log format {name!r} has no status field ($status or %>s)")
    if not ({REQUEST_LINE, PATH} & roles.keys()):
        raise ConfigError(f"log format {name!r} has no request ($request, %r) or path")
    time = next((t for t in TIME_SPECS if t.role in roles), None)
    if time is None:
        raise ConfigError(f"log format {name!r} has no time ($time_local, $time_iso8601, %t)")
    return CompiledFormat(
        name=name,
        regex=regex.rstrip() + r"\s*$",
        roles=roles,
        time=time,
        latency=_latency_spec(roles),
    )


def compile_nginx(spec: str) -> CompiledFormat:
    """An nginx `log_format` string (or preset name) -> CompiledFormat."""
    spec = PRESETS["nginx"].get(spec, spec)
    parts: list[tuple[str, str | None]] = []
    pos = 0
    for m in re.finditer(r"\$(?:\{(\w+)\}|(\w+))", spec):
        parts.append((spec[pos : m.start()], m.group(1) or m.group(2)))
        pos = m.end()
    parts.append((spec[pos:], None))
    return _compile(NGINX, parts)


def compile_apache(spec: str) -> CompiledFormat:
    """An Apache `LogFormat` string (or preset name) -> CompiledFormat."""
    spec = PRESETS["apache"].get(spec, spec)
    parts: list[tuple[str, str | None]] = []
    pos = 0
    for m in re.finditer(r"%(%|[<>]?(?:\{[^}]*\})?[a-zA-Z])", spec):
        if m.group(1) == "%":
            continue
        directive = m.group(1).lstrip("<")
        if (
            directive.startswith("{")
            and directive.endswith("t")
            and directive[1:-2] not in ("ms", "us", "s")
        ):
            raise ConfigError(f"Apache time format {directive!r} is not supported; use %t")
        parts.append(
            (
                spec[pos : m.start()].replace("%%", "%"),
                _braced_lower(directive),
            )
        )
        pos = m.end()
    parts.append((spec[pos:].replace("%%", "%"), None))
    return _compile(APACHE, parts)


def _braced_lower(directive: str) -> str:
    """'{User-Agent}i' -> '{user-agent}i': header names are case-insensitive, but the letter
    after the braces is not ('{ms}T' is a duration, '{...}t' a time format)."""
    if not directive.startswith("{"):
        return directive
    inner, _, letter = directive[1:].rpartition("}")
    return "{" + inner.lower() + "}" + letter


# AWS Application Load Balancer access log: the first 18 fields; later ones are ignored so
# that fields AWS appends over time do not break parsing.
ALB = CompiledFormat(
    name="alb",
    regex=(
        r"^(\S+) (\S+) (\S+) (\S+) (\S+) (\S+) (\S+) (\S+) (\S+) (\S+) (\S+) (\S+) "
        rf'"{QUOTED}" "{QUOTED}" (\S+) (\S+) (\S+) "([^"]*+)"(?: .*)?$'
    ),
    roles={
        TIME_ISO: 2,
        CLIENT_IP_PORT: 4,
        "alb_request_s": 6,
        "alb_target_s": 7,
        "alb_response_s": 8,
        STATUS: 9,
        BYTES: 12,
        REQUEST_LINE: 13,
        USER_AGENT: 14,
        REQUEST_ID: 18,
    },
    time=TimeSpec(TIME_ISO, "iso"),
    # request + target + response processing time; -1 in any: no response from a target.
    latency=LatencySpec(
        roles=("alb_request_s", "alb_target_s", "alb_response_s"),
        unit="s",
        raw="alb_target_s",
        absent="-1",
    ),
)

# HAProxy `option httplog`, with or without the syslog prefix; timers TR/Tw/Tc/Tr/Ta in ms.
HAPROXY = CompiledFormat(
    name="haproxy",
    regex=(
        r"^(?:.*?haproxy\[\d+\]: )?(\S+):\d+ \[([^\]]+)\] \S+ \S+ "
        r"(-?\d+)/(-?\d+)/(-?\d+)/(-?\d+)/\+?(-?\d+) (\d{3}) \+?(\d+) .*?"
        rf'"{QUOTED}"\s*$'
    ),
    roles={
        CLIENT_IP: 1,
        "haproxy_time": 2,
        "haproxy_total_ms": 7,
        STATUS: 8,
        BYTES: 9,
        REQUEST_LINE: 10,
    },
    # 06/Feb/2009:12:14:14.655, no offset: in the configured timezone.
    time=TimeSpec("haproxy_time", "pattern", "dd/MMM/yyyy:HH:mm:ss.SSS", local=True),
    # Ta (Tt before HAProxy 1.9) in ms; -1 means not measured.
    latency=LatencySpec(
        roles=("haproxy_total_ms",), unit="ms", raw="haproxy_total_ms", absent="-1"
    ),
)


# Access-log format name -> its CompiledFormat for a spec (or preset name; nginx and Apache).
COMPILERS: dict[str, Callable[[str | None], CompiledFormat]] = {
    "nginx": lambda spec: compile_nginx(spec or "combined"),
    "apache": lambda spec: compile_apache(spec or "combined"),
    "alb": lambda spec: ALB,
    "haproxy": lambda spec: HAPROXY,
}
ACCESS_LOG_FORMATS = tuple(COMPILERS)
# What `apistream ingest` reads unless --format says otherwise.
DEFAULT_ACCESS_LOG_FORMAT = ACCESS_LOG_FORMATS[0]


def is_access_log(fmt: str) -> bool:
    """Whether `fmt` names an access-log format (compiled here), not a JSON one."""
    return fmt in COMPILERS


def compile_format(fmt: str, spec: str | None, timezone: str = "UTC") -> CompiledFormat:
    """The CompiledFormat for a format name and, for nginx/apache, a spec or preset name."""
    if not is_access_log(fmt):
        raise ConfigError(f"unknown access-log format {fmt!r}")
    return replace(COMPILERS[fmt](spec), timezone=timezone)


def presets_help() -> str:
    """The named log_format presets, for --help: 'nginx: combined, combined_rt; ...'."""
    return "; ".join(f"{fmt}: {', '.join(names)}" for fmt, names in PRESETS.items())
