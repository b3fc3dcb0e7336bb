"""Render docs/reliability.md from a pytest JUnit XML report (`make reliability`).

Every row is a test's result: the hostile-input cases with the outcomes the corpus test
observed (recorded as test properties), and each fault with the test that provokes it.

    python scripts/reliability_doc.py .cache/reliability.xml > docs/reliability.md
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "fixtures" / "hostile"))
from hostile_corpus import CASES

# (fault, what must happen, test id as pytest names it in JUnit XML: classname::name)
FAULTS = (
    (
        "SIGKILL of the driver and its JVM between the lake write and the SQLite commit",
        "restart: SQLite and lake identical to an uninterrupted run",
        "tests.spark.test_crash::test_sigkill_between_lake_write_and_sqlite_commit_then_restart_is_exact",
    ),
    (
        "SIGKILL of the driver, its JVM and Python workers at random moments (5 in make test, "
        "30 in make chaos), then a restart",
        "SQLite and lake identical to an uninterrupted run; the account balances after every kill",
        "tests.spark.test_chaos::test_sigkill_at_random_moments_then_restart_is_exact",
    ),
    (
        "SIGTERM mid-stream, then a restart (files)",
        "resume from the checkpoint, counts exact against the generator",
        "tests.spark.test_restart::test_sigterm_mid_stream_then_resume_is_exact",
    ),
    (
        "SIGTERM mid-stream, then a restart (Kafka)",
        "resume from the checkpoint, counts exact",
        "tests.spark.test_kafka_recovery::test_sigterm_mid_stream_then_resume_from_checkpoint_is_exact",
    ),
    (
        "Kafka broker restarted mid-stream",
        "nothing lost, counts exact",
        "tests.spark.test_kafka_recovery::test_broker_restart_mid_stream_loses_nothing",
    ),
    (
        "Kafka broker gone for good",
        "a clear error within the client timeout",
        "tests.spark.test_kafka_recovery::test_broker_gone_for_good_fails_clearly_within_the_client_timeout",
    ),
    (
        "output directory under a file",
        "one-line error naming the path",
        "tests.unit.test_preflight::test_output_under_a_file_names_the_path",
    ),
    (
        "output directory is a file",
        "one-line error naming the path",
        "tests.unit.test_preflight::test_output_that_is_a_file_names_the_path",
    ),
    (
        "output directory read-only",
        "one-line error naming the path",
        "tests.unit.test_preflight::test_read_only_output_names_the_path",
    ),
    (
        "SQLite database locked by another process at start",
        "bounded wait, then an error naming the holding process",
        "tests.unit.test_preflight::test_locked_database_waits_then_names_the_holder",
    ),
    (
        "SQLite locked briefly during a write",
        "the write waits and loses nothing",
        "tests.unit.test_preflight::test_a_write_waits_for_a_short_lock_and_loses_nothing",
    ),
    (
        "SQLite locked longer than the write's patience",
        "a clear error",
        "tests.unit.test_preflight::test_a_write_gives_up_after_its_patience",
    ),
    (
        "input directory missing",
        "one-line error",
        "tests.unit.test_cli::test_missing_input_directory",
    ),
    (
        "disk full: the output on a tmpfs with room for half of it",
        "one-line error, the account balanced; after space is freed the resume equals an "
        "uninterrupted run",
        "tests.spark.test_full_disk::test_full_disk_stops_clearly_and_the_resume_is_exact",
    ),
    (
        "input directory removed while a live stream runs",
        "one-line error with the committed account, which SQLite holds exactly",
        "tests.spark.test_input_faults::test_input_directory_removed_mid_run_is_one_clear_message",
    ),
    (
        "an input file cut short mid-line while a live stream runs, before it is read",
        "its lines counted as they then are, the cut line quarantined as malformed_json",
        "tests.spark.test_input_faults::test_a_file_cut_mid_line_before_it_is_read_is_counted_as_it_is",
    ),
    (
        "truncated .gz and .bz2, a text file named .gz",
        "one corrupt_archive record each; lines before the damage processed; account exact",
        "tests.spark.test_compressed_input::test_each_damaged_archive_is_one_corrupt_archive_record",
    ),
    (
        "good .gz and .bz2 input",
        "read whole",
        "tests.spark.test_compressed_input::test_good_archives_are_read_whole",
    ),
    (
        "random bytes and mutated JSON / nginx records (hypothesis)",
        "nothing raises; exactly one outcome per line",
        "tests.spark.test_properties::test_random_bytes_as_json_lines",
    ),
    (
        "a planted hash key (enrichment.*: hash)",
        "absent from the output dir, the logs and every executed plan",
        "tests.spark.test_secrets::test_planted_hash_key_is_nowhere_after_a_run",
    ),
    (
        "dashboard request with a foreign Host header (DNS rebinding)",
        "refused",
        "tests.unit.test_dashboard_host::test_localhost_names_are_answered_and_others_refused",
    ),
    (
        "a 1,600-character nginx user agent (the report that opened issue 12)",
        "parsed, valid",
        "tests.spark.test_long_fields::test_minimal_reproduction",
    ),
    (
        "100k-line nginx log, every 100th user agent 7 KB",
        "all 100,000 valid, counts exact",
        "tests.spark.test_hostile_input::test_nginx_log_with_7kb_user_agents_ingests_exactly",
    ),
    (
        "quoted fields of 10 KB, 100 KB and 1 MB in every access-log format",
        "parsed exactly",
        "tests.spark.test_long_fields::test_long_quoted_fields_parse_exactly",
    ),
)


def results(xml_path: Path) -> tuple[dict[str, str], dict[str, dict]]:
    """(test id -> passed/failed/skipped, observed outcomes by case recorded by the tests)."""
    status: dict[str, list[str]] = defaultdict(list)
    observed: dict[str, dict] = {}
    for case in ET.parse(xml_path).iter("testcase"):
        name = case.get("name", "").split("[")[0]
        test_id = f"{case.get('classname')}::{name}"
        outcome = "passed"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        status[test_id].append(outcome)
        for prop in case.iter("property"):
            if prop.get("name") == "observed":
                observed.update(json.loads(prop.get("value", "{}")))
    merged = {
        k: "failed" if "failed" in v else "skipped" if "skipped" in v else "passed"
        for k, v in status.items()
    }
    return merged, observed


def _outcome(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" if v > 1 else k for k, v in sorted(counts.items()))


def render(xml_path: Path) -> str:
    status, observed = results(xml_path)
    corpus = status.get("tests.spark.test_hostile_input::test_every_case_ends_as_expected")
    lines = [
        "# Reliability: what each kind of bad input and each fault becomes",
        "",
        "Generated by `make reliability` from the test results "
        "(scripts/reliability_doc.py); do not edit by hand.",
        "",
        f"## Hostile input ({len(CASES)} kinds, tests/fixtures/hostile)",
        "",
        "Each file of the corpus is ingested; every line must end as the outcome below, with "
        "input = valid + quarantined + duplicates + late exact and nothing raised "
        f"(tests/spark/test_hostile_input.py: **{corpus or 'not run'}**). A quarantined line "
        "keeps its text in `raw`; a line that is not UTF-8 also keeps its exact bytes in "
        "`raw_bytes`.",
        "",
        "| format | kind | outcome (lines) | expected | reading |",
        "|---|---|---|---|---|",
    ]
    for c in CASES:
        seen = observed.get(f"{c.fmt}/{c.name}")
        got = _outcome(seen) if seen is not None else "not run"
        mark = "" if seen == c.outcome else " ✗"
        reading = c.reading.replace("|", "\\|")
        lines.append(f"| {c.fmt} | `{c.name}` | {got}{mark} | {_outcome(c.outcome)} | {reading} |")
    lines += [
        "",
        "## Faults",
        "",
        "| fault | what must happen | test | result |",
        "|---|---|---|---|",
    ]
    for fault, must, test_id in FAULTS:
        module, name = test_id.split("::")
        lines.append(
            f"| {fault} | {must} | `{module.replace('.', '/')}.py::{name}` | "
            f"{status.get(test_id, 'not run')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(Path(sys.argv[1])))
