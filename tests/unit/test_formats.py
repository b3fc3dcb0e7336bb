"""Format specs compile into the expected regex and roles (plain Python `re` on fixtures)."""

import random
import re
from pathlib import Path

import pytest

from apistream.errors import ConfigError
from apistream.ingest import formats as fm

LOGS = Path(__file__).parents[1] / "fixtures" / "logs"
NGINX_CUSTOM = (
    '$remote_addr [$time_iso8601] "$request_method $request_uri" $status '
    '$bytes_sent $request_id $upstream_response_time "$http_user_agent" '
    '"$http_x_api_key"'
)
APACHE_TIMED = '%h %l %u %t "%r" %>s %b %D "%{User-Agent}i"'


def groups(fmt: fm.CompiledFormat, line: str) -> dict[str, str] | None:
    m = re.match(fmt.regex, line)
    return {role: m.group(i) for role, i in fmt.roles.items()} if m else None


def lines(name: str) -> list[str]:
    return (LOGS / name).read_text().splitlines()


def test_nginx_combined_rt_preset():
    fmt = fm.compile_format("nginx", "combined_rt")
    first, second, _, bad, _ = lines("nginx_combined_rt.log")
    assert groups(fmt, first) == {
        fm.CLIENT_IP: "192.0.2.10",
        fm.TIME_CLF: "27/Nov/2026:10:00:01 +0100",
        fm.REQUEST_LINE: "GET /api/v2/banner/25019354?lang=en HTTP/1.1",
        fm.STATUS: "200",
        fm.BYTES: "512",
        fm.USER_AGENT: "curl/8.8.0",
        fm.LATENCY_S: "0.123",
    }
    assert groups(fmt, second)[fm.USER_AGENT] == 'Mozilla/5.0 (X11; Linux x86_64) \\"quoted\\"'
    assert groups(fmt, bad) is None


def test_nginx_custom_format_with_request_id_and_upstream_time():
    fmt = fm.compile_nginx(NGINX_CUSTOM)
    a, b = lines("nginx_custom.log")
    assert groups(fmt, a) == {
        fm.CLIENT_IP: "10.1.2.3",
        fm.TIME_ISO: "2026-11-27T09:00:00+00:00",
        fm.METHOD: "GET",
        fm.PATH: "/users/42",
        fm.STATUS: "200",
        fm.BYTES: "1024",
        fm.REQUEST_ID: "f3a8c2e1d4b5a6978877665544332211",
        "upstream_latency_s": "0.042",
        fm.USER_AGENT: "okhttp/4.12.0",
        fm.API_KEY: "key-123",
    }
    assert groups(fmt, b)[fm.REQUEST_ID] == "-"


def test_apache_presets_and_timed_format():
    assert fm.compile_apache("common").roles == {
        fm.CLIENT_IP: 1,
        fm.TIME_CLF: 4,
        fm.REQUEST_LINE: 5,
        fm.STATUS: 6,
        fm.BYTES_DASH_ZERO: 7,
    }
    fmt = fm.compile_apache(APACHE_TIMED)
    g = groups(fmt, lines("apache_timed.log")[0])
    assert (g[fm.TIME_CLF], g[fm.BYTES_DASH_ZERO], g[fm.LATENCY_US]) == (
        "27/Nov/2026:08:00:00 -0500",
        "-",
        "2500",
    )


def test_real_apache_log_matches_all_but_the_truncated_line(real_apache_lines):
    fmt = fm.compile_apache("combined")
    bad = [i for i, line in enumerate(real_apache_lines, 1) if not re.match(fmt.regex, line)]
    assert bad == [8899]


@pytest.mark.parametrize(
    ("directive", "role", "unit"),
    [
        ("%{ms}T", fm.LATENCY_MS, "ms"),
        ("%{us}T", fm.LATENCY_US, "us"),
        ("%{s}T", fm.LATENCY_S, "s"),
    ],
)
def test_apache_duration_with_a_unit_is_the_latency(directive, role, unit):
    # Apache 2.4's %{UNIT}T; header names in braces are case-insensitive, the letter is not.
    fmt = fm.compile_apache(f'%h %t "%r" %>s %b "%{{User-Agent}}i" {directive}')
    assert (fmt.latency.roles, fmt.latency.unit) == ((role,), unit)
    line = '10.0.0.1 [27/Nov/2026:08:00:00 +0000] "GET /a HTTP/1.1" 200 12 "curl/8" 1234'
    g = groups(fmt, line)
    assert (g[role], g[fm.USER_AGENT]) == ("1234", "curl/8")


def test_alb_and_haproxy_layouts():
    ok, failed = lines("alb.log")
    g = groups(fm.ALB, failed)
    assert (g[fm.STATUS], g["alb_target_s"], g[fm.REQUEST_ID]) == (
        "502",
        "-1",
        "Root=1-58337262-36d228ad5d99923122bbe355",
    )
    assert groups(fm.ALB, ok)[fm.CLIENT_IP_PORT] == "192.168.131.39:2817"
    first, badreq, timeout = lines("haproxy.log")
    assert groups(fm.HAPROXY, first)["haproxy_total_ms"] == "109"
    assert groups(fm.HAPROXY, badreq)[fm.REQUEST_LINE] == "<BADREQ>"
    assert groups(fm.HAPROXY, timeout)[fm.STATUS] == "504"


def test_time_and_latency_specs_follow_the_format_string():
    combined = fm.compile_format("nginx", "combined")
    assert (combined.time.role, combined.time.kind, combined.latency) == (
        fm.TIME_CLF,
        "pattern",
        None,
    )
    custom = fm.compile_nginx(NGINX_CUSTOM).latency
    assert (custom.roles, custom.unit, custom.absent) == (("upstream_latency_s",), "s", None)
    both = fm.compile_nginx(
        '$msec [$time_iso8601] "$request" $status $upstream_response_time $request_time'
    )
    assert (both.time.role, both.time.kind, both.latency.roles) == (
        fm.TIME_ISO,
        "iso",
        (fm.LATENCY_S,),
    )
    seconds = fm.compile_apache('%h %t "%r" %>s %T').latency
    assert (seconds.roles, seconds.unit) == ((fm.LATENCY_S,), "s")
    micros = fm.compile_apache('%h %t "%r" %>s %T %D').latency
    assert (micros.roles, micros.unit) == ((fm.LATENCY_US,), "us")


def test_fixed_layouts_read_latency_and_time_from_their_own_fields():
    """ALB: request + target + response seconds, -1 when no target answered; HAProxy: Ta in
    ms, -1 when aborted; its time has no offset, so it is read in the configured zone."""
    ok, failed = lines("alb.log")
    alb = fm.compile_format("alb", None)
    assert [groups(alb, ok)[r] for r in alb.latency.roles] == ["0.000", "0.001", "0.000"]
    assert [groups(alb, failed)[r] for r in alb.latency.roles] == ["-1", "-1", "-1"]
    assert (alb.latency.unit, alb.latency.absent, alb.time.kind) == ("s", "-1", "iso")
    haproxy = fm.compile_format("haproxy", None, "Europe/Paris")
    first = lines("haproxy.log")[0]
    assert [groups(haproxy, first)[r] for r in haproxy.latency.roles] == ["109"]
    assert groups(haproxy, first)[haproxy.time.role] == "27/Nov/2026:12:14:14.655"
    assert (haproxy.latency.unit, haproxy.time.local, haproxy.timezone) == (
        "ms",
        True,
        "Europe/Paris",
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ('$remote_addr "$request"', "no status"),
        ("$remote_addr $status", "no request"),
        ('%h "%r" %>s', "no time"),
        ('%h %{%d/%b}t "%r" %>s', "not supported"),
    ],
)
def test_incomplete_formats_are_config_errors(spec, message):
    compile_ = fm.compile_nginx if spec.startswith("$") else fm.compile_apache
    with pytest.raises(ConfigError, match=message):
        compile_(spec)


# --- Quoted fields of any length (java.util.regex recursed once per character) -------------

OLD_QUOTED = r'((?:[^"\\]|\\.)*)'  # the pattern that overflowed Java's stack at ~1,500 chars
ALL_FORMATS = {
    "nginx combined": fm.compile_format("nginx", "combined"),
    "nginx combined_rt": fm.compile_format("nginx", "combined_rt"),
    "nginx custom": fm.compile_nginx(NGINX_CUSTOM),
    "apache common": fm.compile_format("apache", "common"),
    "apache combined": fm.compile_format("apache", "combined"),
    "apache timed": fm.compile_apache(APACHE_TIMED),
    "alb": fm.compile_format("alb", None),
    "haproxy": fm.compile_format("haproxy", None),
}
REPRO = (
    '10.0.0.1 - - [29/Nov/2026:02:20:00 +0000] "GET /api/v1/users/1 HTTP/1.1" 200 512 "-" "'
    + "M" * 1600
    + '"'
)


def recursive_repeats(regex: str) -> list[str]:
    """The repeats java.util.regex would run by recursion: a greedy or lazy `*`, `+` or `{n,m}`
    (m > 1) over anything but one character or class. Possessive repeats and single-character
    repeats are loops in Java."""
    from re import _constants as c
    from re import _parser

    single = {c.LITERAL, c.NOT_LITERAL, c.IN, c.ANY, c.CATEGORY}
    found: list[str] = []

    def walk(pattern) -> None:
        for op, av in pattern:
            if op in (c.MAX_REPEAT, c.MIN_REPEAT):
                _, hi, body = av
                if hi > 1 and not (len(body) == 1 and body[0][0] in single):
                    found.append(f"{op} {body}")
                walk(body)
            elif op is c.POSSESSIVE_REPEAT:
                walk(av[2])
            elif op is c.SUBPATTERN:
                walk(av[3])
            elif op is c.BRANCH:
                for alternative in av[1]:
                    walk(alternative)
            elif op is c.ATOMIC_GROUP:
                walk(av)
            elif op in (c.ASSERT, c.ASSERT_NOT):
                walk(av[1])

    walk(_parser.parse(regex))
    return found


def test_recursive_repeat_check_catches_the_old_quoted_pattern():
    assert recursive_repeats(f'^"{OLD_QUOTED}"$')
    assert recursive_repeats(r"^(?:\d+,)*$")
    assert not recursive_repeats(rf'^"{fm.QUOTED}" \[{fm.BRACKETED}\] {fm.TOKEN} (?: .*)?$')


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_no_format_regex_repeats_a_group_by_recursion(name):
    assert recursive_repeats(ALL_FORMATS[name].regex) == []


def sample_line(name: str) -> str:
    """A line of each format in ALL_FORMATS."""
    nginx = lines("nginx_combined_rt.log")[1]
    apache = '203.0.113.5 - - [27/Nov/2026:08:00:00 -0500] "GET /files/1 HTTP/1.1" 200 -'
    return {
        "nginx combined": nginx.rsplit(" ", 1)[0],
        "nginx combined_rt": nginx,
        "nginx custom": lines("nginx_custom.log")[0],
        "apache common": apache,
        "apache combined": apache + ' "-" "Wget/1.21"',
        "apache timed": lines("apache_timed.log")[0],
        "alb": lines("alb.log")[0],
        "haproxy": lines("haproxy.log")[0],
    }[name]


@pytest.mark.parametrize("name", ALL_FORMATS)
def test_quoted_field_matches_exactly_what_the_old_pattern_matched(name):
    """Possessive and unrolled, QUOTED accepts and captures what the old pattern did: each
    quoted field of a line replaced by random runs of quotes, backslashes and escapes."""
    fmt = ALL_FORMATS[name]
    old = re.compile(fmt.regex.replace(fm.QUOTED, OLD_QUOTED))
    new = re.compile(fmt.regex)
    assert old.pattern != new.pattern
    line = sample_line(name)
    m = new.match(line)
    assert m and old.match(line).groups() == m.groups()
    quoted = [m.span(i) for i in range(1, len(m.groups()) + 1) if line[m.start(i) - 1] == '"']
    assert quoted
    rng = random.Random(7)
    pieces = ["a", " ", "-", '"', "\\", '\\"', "\\\\", "\\x22", "]", "[", "\t", '" "']
    outcomes = set()
    for _ in range(2000):
        start, end = rng.choice(quoted)
        junk = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        text = line[:start] + junk + line[end:]
        m_old, m_new = old.match(text), new.match(text)
        assert (m_old and m_old.groups()) == (m_new and m_new.groups()), text
        outcomes.add(m_new is None)
    assert outcomes == {True, False}  # both lines that match and lines that do not


def test_minimal_reproduction_parses_in_python_re():
    assert groups(fm.compile_format("nginx", "combined"), REPRO) == {
        fm.CLIENT_IP: "10.0.0.1",
        fm.TIME_CLF: "29/Nov/2026:02:20:00 +0000",
        fm.REQUEST_LINE: "GET /api/v1/users/1 HTTP/1.1",
        fm.STATUS: "200",
        fm.BYTES: "512",
        fm.USER_AGENT: "M" * 1600,
    }


def test_megabyte_quoted_field_with_escapes_in_python_re():
    ua = '\\"' + "Mozilla/5.0 (X11) " * 58_254 + '\\"\\\\'
    assert len(ua) > 1_000_000
    line = REPRO.replace("M" * 1600, ua) + " 0.250"
    g = groups(fm.compile_format("nginx", "combined_rt"), line)
    assert (g[fm.USER_AGENT], g[fm.LATENCY_S], g[fm.STATUS]) == (ua, "0.250", "200")
