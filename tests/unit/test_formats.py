"""Format specs compile into the expected regex and roles (plain Python `re` on fixtures)."""

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
