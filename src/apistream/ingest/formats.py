"""Access-log formats compiled once into a regex and a field mapping (plain Python, no Spark).

nginx `log_format` strings ($variables) and Apache `LogFormat` strings (%directives) are turned
into one anchored regex with a capture group per variable, and each variable into a role
(timestamp, request line, status, latency in some unit, ...). AWS ALB and HAProxy `httplog`
have fixed layouts. pipeline/parse_access.py turns a CompiledFormat into Spark expressions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from apistream.errors import ConfigError

# Roles a captured field can play in the event schema.
TIME_CLF = "time_clf"  # 17/May/2015:10:05:03 +0000
TIME_ISO = "time_iso"
TIME_EPOCH = "time_epoch"  # seconds, e.g. nginx $msec
TIME_HAPROXY = "time_haproxy"  # 06/Feb/2009:12:14:14.655, no offset
REQUEST_LINE = "request_line"  # GET /path HTTP/1.1
METHOD, PATH, STATUS = "method", "path", "status"
BYTES, BYTES_DASH_ZERO = "bytes", "bytes_dash_zero"  # Apache %b writes '-' for zero
LATENCY_S, LATENCY_MS, LATENCY_US = "latency_s", "latency_ms", "latency_us"
CLIENT_IP, CLIENT_IP_PORT = "client_ip", "client_ip_port"
USER_AGENT, REQUEST_ID, API_KEY = "user_agent", "request_id", "api_key"
LATENCY_PRIORITY = (LATENCY_US, LATENCY_MS, LATENCY_S)

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
    "upstream_response_time": "upstream_latency_s",
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
class CompiledFormat:
    """An anchored (Java-compatible) regex and, per capture group (1-based), its role."""

    name: str
    regex: str
    roles: dict[str, int] = field(default_factory=dict)
    timezone: str = "UTC"

    def has(self, role: str) -> bool:
        return role in self.roles


def _group_pattern(literal_before: str, literal_after: str) -> str:
    if literal_before.endswith('"') and literal_after.startswith('"'):
        return QUOTED
    if literal_before.endswith("[") and literal_after.startswith("]"):
        return BRACKETED
    return TOKEN


def _compile(
    name: str, parts: list[tuple[str, str | None]], role_of: dict[str, str]
) -> CompiledFormat:
    """parts: (literal, variable-or-None) pairs in order."""
    regex, roles, group = "^", {}, 0
    for i, (literal, var) in enumerate(parts):
        regex += re.escape(literal)
        if var is None:
            continue
        after = parts[i + 1][0] if i + 1 < len(parts) else ""
        group += 1
        pattern = rf"\[{BRACKETED}\]" if var == "t" and role_of is APACHE_ROLES else None
        regex += pattern or _group_pattern(literal, after)
        role = role_of.get(var) or role_of.get(var.lower())
        if role and role not in roles:
            roles[role] = group
    if STATUS not in roles:
        raise ConfigError(f"log format {name!r} has no status field ($status or %>s)")
    if not ({REQUEST_LINE, PATH} & roles.keys()):
        raise ConfigError(f"log format {name!r} has no request ($request, %r) or path")
    if not ({TIME_CLF, TIME_ISO, TIME_EPOCH} & roles.keys()):
        raise ConfigError(f"log format {name!r} has no time ($time_local, $time_iso8601, %t)")
    return CompiledFormat(name=name, regex=regex.rstrip() + r"\s*$", roles=roles)


def compile_nginx(spec: str) -> CompiledFormat:
    """An nginx `log_format` string (or preset name) -> CompiledFormat."""
    spec = PRESETS["nginx"].get(spec, spec)
    parts: list[tuple[str, str | None]] = []
    pos = 0
    for m in re.finditer(r"\$(?:\{(\w+)\}|(\w+))", spec):
        parts.append((spec[pos : m.start()], m.group(1) or m.group(2)))
        pos = m.end()
    parts.append((spec[pos:], None))
    return _compile("nginx", parts, NGINX_ROLES)


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
                directive.lower() if directive.startswith("{") else directive,
            )
        )
        pos = m.end()
    parts.append((spec[pos:].replace("%%", "%"), None))
    return _compile("apache", parts, APACHE_ROLES)


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
        TIME_HAPROXY: 2,
        "haproxy_total_ms": 7,
        STATUS: 8,
        BYTES: 9,
        REQUEST_LINE: 10,
    },
)


def compile_format(fmt: str, spec: str | None, timezone: str = "UTC") -> CompiledFormat:
    """The CompiledFormat for a format name and, for nginx/apache, a spec or preset name."""
    if fmt == "nginx":
        compiled = compile_nginx(spec or "combined")
    elif fmt == "apache":
        compiled = compile_apache(spec or "combined")
    elif fmt == "alb":
        compiled = ALB
    elif fmt == "haproxy":
        compiled = HAPROXY
    else:
        raise ConfigError(f"unknown access-log format {fmt!r}")
    return CompiledFormat(compiled.name, compiled.regex, compiled.roles, timezone)
