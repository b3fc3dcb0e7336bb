"""`apistream deploy`: each target's artefacts parse, carry the required fields in the shape
the platform's tool reads, and take every path of the user's from the config; what a cluster
run cannot do with fails naming the key."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from apistream.cli import app
from apistream.config import load_config
from apistream.deploy import DATAPROC_PYTHON, EMR_PYTHON, INSTALL_DIR, TARGETS, render
from apistream.errors import ConfigError

# Distinct values, so each one found in an artefact can only have come from the config.
CLUSTER = {
    "deploy.artifacts": "gs://acme-artifacts-7/apistream",
    "sinks.output": "gs://acme-lake-42/run",
    "sinks.sqlite_file": "/mnt/state-42/apistream/analytics.db",
    "source.path": "gs://acme-logs-9/incoming",
    "deploy.dataproc.project": "acme-prod-3",
    "deploy.dataproc.cluster": "stream-cl-5",
    "deploy.dataproc.image_version": "9.9-acme",
    "deploy.emr.cluster_id": "j-ACME12345",
    "deploy.databricks.spark_version": "99.1.x-scala2.13",
    "deploy.databricks.node_type_id": "acme.node.8",
    "deploy.k8s.image": "registry.acme.test/apistream:77",
    "deploy.k8s.sqlite_claim": "acme-claim-6",
    "deploy.size.executors": 5,
    "deploy.size.executor_memory": "6g",
}
ARTIFACTS = {
    "dataproc": "gs://acme-artifacts-7/apistream",
    "emr": "s3://acme-artifacts-7/apistream",
    "databricks": "/Volumes/acme/artifacts-7/apistream",
    "k8s": "gs://acme-artifacts-7/apistream",
}
KAFKA = {"source.format": "kafka", "source.kafka.bootstrap_servers": "kafka-1.acme.test:9093"}
CONNECTOR = load_config(environ={}).source.kafka.connector
# The recipe's own fixed places and the platforms' (not the user's): nothing else may appear.
FIXED = (
    INSTALL_DIR,
    DATAPROC_PYTHON,
    "/usr/share/google/get_metadata_value",
    "/tmp/.ivy2",
    "/usr/bin/env",
    "/dev/null",
    "deploy/spark/",
    "deploy/k8s/",
    "dist/",
    "$HERE/",
    "file://$HERE/",
    "local:///opt/apistream/",
    "sparkoperator.k8s.io/v1beta2",
    "k8s://https://kubernetes.default.svc:443",
)
PATH = re.compile(r"(?<![\w.$-])(?:[a-z][a-z0-9+.-]*:/{1,3}|/|\$HERE/|dist/|deploy/)[^\s'\",#)|]*")


def cluster(target: str, **extra: object) -> dict[str, object]:
    return CLUSTER | {"deploy.artifacts": ARTIFACTS[target]} | extra


def artefacts(target: str, until_idle: bool = False, **extra: object) -> dict[str, str]:
    cfg = load_config(environ={}, overrides=cluster(target, **extra))
    return {a.name: a.text for a in render(target, cfg, until_idle)}


def check_syntax(name: str, text: str) -> object:
    if name.endswith(".json"):
        return json.loads(text)
    if name.endswith(".yaml"):
        return yaml.safe_load(text)
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    return text


def user_paths(values: dict[str, object]) -> list[str]:
    """The config's own paths, as artefacts may spell them."""
    artifacts = str(values["deploy.artifacts"])
    found = [artifacts, f"dbfs:{artifacts}", str(values["sinks.output"])]
    found += [str(values["source.path"]), str(Path(str(values["sinks.sqlite_file"])).parent)]
    return found


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("source", ["files", "kafka"])
def test_artefacts_parse_and_every_path_is_the_configs_or_the_recipes(target, source):
    extra = KAFKA if source == "kafka" else {}
    values = cluster(target, **extra)
    allowed = (*user_paths(values), *FIXED)
    for name, text in artefacts(target, **extra).items():
        check_syntax(name, text)
        if name == "config.yaml":
            continue  # the config itself
        for path in PATH.findall(text):
            assert path.startswith(allowed), f"{name}: {path} is neither the config's nor fixed"


@pytest.mark.parametrize("target", TARGETS)
def test_another_config_leaves_no_trace_of_the_first(target):
    first = "\n".join(artefacts(target).values())
    moved = {
        "sinks.output": "gs://elsewhere-1/out",
        "sinks.sqlite_file": "/srv/other-2/db.sqlite",
        "source.path": "gs://elsewhere-3/in",
    }
    if target != "k8s":
        moved["deploy.artifacts"] = {
            "dataproc": "gs://other-4/a",
            "emr": "s3://other-4/a",
            "databricks": "/Volumes/other-4/a/b",
        }[target]
    second = "\n".join(artefacts(target, **moved).values())
    for key, value in moved.items():
        old = str(cluster(target)[key])
        assert old in first and old not in second and value in second, key


@pytest.mark.parametrize("target", TARGETS)
def test_the_uploaded_config_is_the_effective_one_without_laptop_settings(target, tmp_path):
    cfg = load_config(environ={}, overrides=cluster(target))
    text = artefacts(target)["config.yaml"]
    (tmp_path / "config.yaml").write_text(text)
    uploaded = load_config(tmp_path / "config.yaml", environ={})
    assert uploaded.sinks == cfg.sinks and uploaded.endpoints == cfg.endpoints
    assert "spark.ui.enabled" in cfg.spark.conf and "spark.driver.memory" in cfg.spark.conf
    assert "spark.ui.enabled" not in uploaded.spark.conf
    assert "spark.driver.memory" not in uploaded.spark.conf
    assert uploaded.spark.conf["spark.executor.extraJavaOptions"] == "-XX:-DontCompileHugeMethods"


def _copies(script: str, tool: str) -> list[list[str]]:
    return [shlex.split(x)[len(tool.split()) :] for x in script.splitlines() if x.startswith(tool)]


def test_dataproc_installs_on_the_master_only_and_submits_to_the_named_cluster():
    files = artefacts("dataproc", until_idle=True, **KAFKA)
    script = files["dataproc.sh"]
    [submit] = [x for x in script.splitlines() if "jobs submit pyspark" in x]
    words = shlex.split(submit)
    assert words[5] == "gs://acme-artifacts-7/apistream/apistream_submit.py"
    assert {"--project=acme-prod-3", "--cluster=stream-cl-5", "--region=us-central1"} <= set(words)
    props = next(w for w in words if w.startswith("--properties="))
    assert props.startswith("--properties=^#^")
    conf = dict(p.split("=", 1) for p in props.removeprefix("--properties=^#^").split("#"))
    assert conf["spark.executor.instances"] == "5" and conf["spark.executor.memory"] == "6g"
    assert conf["spark.jars.packages"] == CONNECTOR
    assert conf["spark.executor.extraJavaOptions"] == "-XX:-DontCompileHugeMethods"
    assert "spark.ui.enabled" not in conf
    assert words[words.index("--") + 1 :] == [
        "stream", "--until-idle", "--output", "gs://acme-lake-42/run",
        "--config", f"{INSTALL_DIR}/config.yaml",
    ]  # fmt: skip
    assert "--image-version=9.9-acme" in script
    assert "clusters describe stream-cl-5" in script  # re-running does not fail on create
    assert all(len(args) == 2 for args in _copies(script, "gcloud storage cp"))
    install = files["install.sh"].splitlines()
    assert "dataproc-role" in install[3] and "Master" in install[3] and "exit 0" in install[3]
    assert f"sudo {DATAPROC_PYTHON} -m pip install {INSTALL_DIR}/apistream-" in install[-1]


def test_dataproc_refuses_a_setting_gcloud_cannot_carry():
    values = cluster("dataproc")
    cfg = load_config(environ={}, overrides=values)
    conf = {**cfg.spark.conf, "spark.driver.extraJavaOptions": "-Dx=a#b"}
    bad = cfg.model_copy(update={"spark": cfg.spark.model_copy(update={"conf": conf})})
    with pytest.raises(ConfigError, match=r"spark\.conf\.spark\.driver\.extraJavaOptions"):
        render("dataproc", bad)


def test_emr_steps_have_the_cli_shape_install_then_stream_in_client_mode():
    files = artefacts("emr", **KAFKA)
    steps = json.loads(files["emr-steps.json"])
    assert [s["Type"] for s in steps] == ["CUSTOM_JAR", "CUSTOM_JAR"]
    assert [s["Jar"] for s in steps] == ["command-runner.jar"] * 2
    assert [s["ActionOnFailure"] for s in steps] == ["CANCEL_AND_WAIT", "CONTINUE"]
    bash, dash_c, install = steps[0]["Args"]
    assert (bash, dash_c) == ("bash", "-c")
    check_syntax("install.sh", install)
    assert f"sudo dnf install -y {EMR_PYTHON}" in install
    assert "aws s3 cp s3://acme-artifacts-7/apistream/config.yaml" in install
    args = steps[1]["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "client"]
    conf = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--conf")
    assert conf["spark.executor.instances"] == "5"
    assert conf["spark.pyspark.driver.python"] == EMR_PYTHON
    assert args[args.index("--packages") + 1] == CONNECTOR
    assert args[-6:] == [
        f"{INSTALL_DIR}/apistream_submit.py", "stream", "--output", "gs://acme-lake-42/run",
        "--config", f"{INSTALL_DIR}/config.yaml",
    ]  # fmt: skip
    script = files["emr.sh"]
    assert "--cluster-id j-ACME12345" in script
    copies = _copies(script, "aws s3 cp")
    assert len(copies) == 3 and all(len(args) == 2 for args in copies)


def test_databricks_job_names_the_wheel_runtime_and_config_on_a_volume():
    files = artefacts("databricks", **KAFKA)
    [task] = json.loads(files["databricks-job.json"])["tasks"]
    base = "/Volumes/acme/artifacts-7/apistream"
    assert task["spark_python_task"]["python_file"] == f"{base}/apistream_submit.py"
    assert task["spark_python_task"]["parameters"][-1] == f"{base}/config.yaml"
    assert [lib.keys() for lib in task["libraries"]] == [{"whl": 0}.keys()]  # Kafka is built in
    assert task["libraries"][0]["whl"].startswith(f"{base}/apistream-")
    cluster_spec = task["new_cluster"]
    assert cluster_spec["spark_version"] == "99.1.x-scala2.13"
    assert cluster_spec["node_type_id"] == "acme.node.8" and cluster_spec["num_workers"] == 5
    assert cluster_spec["spark_conf"]["spark.executor.extraJavaOptions"]
    assert "spark.executor.instances" not in cluster_spec["spark_conf"]
    copies = _copies(files["databricks.sh"], "databricks fs cp --overwrite")
    assert len(copies) == 3 and all(dst.startswith(f"dbfs:{base}/") for _, dst in copies)
    assert 'databricks jobs run-now "$job_id"' in files["databricks.sh"]


def test_databricks_dbfs_artifacts_are_read_by_the_driver_under_dbfs():
    spec = json.loads(
        artefacts("databricks", **{"deploy.artifacts": "dbfs:/acme/a7"})["databricks-job.json"]
    )
    assert spec["tasks"][0]["spark_python_task"]["parameters"][-1] == "/dbfs/acme/a7/config.yaml"


def test_k8s_application_mounts_the_sqlite_claim_and_the_config():
    spec = yaml.safe_load(artefacts("k8s", **KAFKA)["spark-application.yaml"])["spec"]
    assert spec["image"] == "registry.acme.test/apistream:77"
    assert spec["executor"] == {"instances": 5, "cores": 2, "memory": "6g"}
    claims = {v["name"]: v for v in spec["volumes"]}
    assert claims["sqlite"]["persistentVolumeClaim"]["claimName"] == "acme-claim-6"
    mounts = {m["name"]: m["mountPath"] for m in spec["driver"]["volumeMounts"]}
    assert mounts["sqlite"] == "/mnt/state-42/apistream"
    assert spec["driver"]["podSecurityContext"] == {"fsGroup": 185}
    assert spec["arguments"] == [
        "stream", "--output", "gs://acme-lake-42/run", "--config",
        f"{mounts['config']}/config.yaml",
    ]  # fmt: skip
    assert spec["sparkConf"]["spark.jars.packages"] == CONNECTOR
    assert spec["sparkConf"]["spark.executor.extraJavaOptions"] == "-XX:-DontCompileHugeMethods"


@pytest.mark.parametrize(
    ("target", "override", "key"),
    [
        ("dataproc", {"deploy.artifacts": None}, "deploy.artifacts"),
        ("dataproc", {"deploy.artifacts": "s3://b/a"}, "deploy.artifacts"),
        ("emr", {"deploy.artifacts": "gs://b/a"}, "deploy.artifacts"),
        ("databricks", {"deploy.artifacts": "gs://b/a"}, "deploy.artifacts"),
        ("dataproc", {"deploy.dataproc.project": None}, "deploy.dataproc.project"),
        ("dataproc", {"deploy.dataproc.image_version": None}, "deploy.dataproc.image_version"),
        ("emr", {"deploy.emr.cluster_id": None}, "deploy.emr.cluster_id"),
        ("databricks", {"deploy.databricks.spark_version": None}, "spark_version"),
        ("databricks", {"deploy.databricks.node_type_id": None}, "node_type_id"),
        ("k8s", {"deploy.k8s.image": None}, "deploy.k8s.image"),
        ("k8s", {"source.path": "data/incoming"}, "source.path"),
        ("emr", {"sinks.output": "output", "sinks.sqlite_file": None}, "sinks.output"),
        (
            "databricks",
            {"sinks.output": "/Volumes/a/b/out", "sinks.sqlite_file": None},
            "sinks.sqlite_file",
        ),
    ],
)
def test_what_a_cluster_cannot_use_fails_naming_the_key(target, override, key):
    values = cluster(target)
    for k, v in override.items():
        values.pop(k)
        if v is not None:
            values[k] = v
    cfg = load_config(environ={}, overrides=values)
    with pytest.raises(ConfigError, match=re.escape(key)):
        render(target, cfg)


def test_config_refuses_a_relative_sqlite_file_beside_a_remote_output():
    with pytest.raises(ConfigError, match="sinks: sqlite_file must be an absolute local path"):
        load_config(environ={}, overrides={"sinks.output": "s3a://b/run"})
    cfg = load_config(environ={}, overrides={"sinks.sqlite_file": "/var/lib/a/x.db"})
    assert cfg.sqlite_path == "/var/lib/a/x.db"


def test_cli_prints_with_dry_run_and_writes_files_without(tmp_path: Path):
    env = {f"APISTREAM_{k.upper().replace('.', '__')}": str(v) for k, v in cluster("emr").items()}
    runner = CliRunner()
    shown = runner.invoke(app, ["deploy", "--target", "emr", "--dry-run"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "# ---- emr-steps.json ----" in shown.output and "j-ACME12345" in shown.output
    out = tmp_path / "recipe"
    written = runner.invoke(app, ["deploy", "--target", "emr", "--out", str(out)], env=env)
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "emr-steps.json", "emr.sh"]
    assert (out / "emr.sh").stat().st_mode & 0o111
    assert json.loads((out / "emr-steps.json").read_text())[1]["Name"] == "apistream stream"
    bad = runner.invoke(app, ["deploy", "--target", "mainframe", "--dry-run"], env=env)
    assert bad.exit_code == 2 and "unknown deploy target 'mainframe'" in bad.output
