"""`apistream deploy`: the artefacts that run the pipeline on Dataproc, EMR, Databricks or
Kubernetes, made from the config (text only; nothing is called or uploaded).

The driver runs `apistream stream` beside its SQLite file (sinks.sqlite_file), on a disk that
outlives the job: the master node on Dataproc and EMR (client mode), a volume claim on
Kubernetes. The executors are plain JVMs: the pipeline has no Python UDFs, so only the driver
needs the package, and the wheel does not require pyspark (the platform's own is used). The
lake and the checkpoints are sinks.output, a URI every node sees. The user's paths in an
artefact all come from the config; the rest are fixed places of the recipe (INSTALL_DIR) or
of the platform (its Python).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml

from apistream.config import Config, is_remote
from apistream.errors import ConfigError
from apistream.spark_stack import check_packages

TARGETS = ("dataproc", "emr", "databricks", "k8s")
SUBMIT_SCRIPT = "apistream_submit.py"  # deploy/spark/apistream_submit.py
CONFIG_NAME = "config.yaml"  # the effective config, written beside the recipe
INSTALL_DIR = "/opt/apistream"  # the package, entry point and config on the driver's node
# Settings of a laptop run that a cluster sets itself (or sizes from deploy.size).
LOCAL_ONLY = ("spark.driver.memory", "spark.ui.enabled", "spark.master")
SIZING = ("spark.executor.instances", "spark.executor.cores", "spark.executor.memory")
# Where each target's copy tool can put the artefacts (deploy.artifacts).
ARTIFACT_SCHEMES = {
    "dataproc": ("gs://",),
    "emr": ("s3://",),
    "databricks": ("dbfs:/", "/Volumes/"),
}
# The driver's Python (3.11+): Dataproc's conda one; on EMR (Amazon Linux 2023, python3 is
# 3.9) python3.11 from the distribution.
DATAPROC_PYTHON = "/opt/conda/default/bin/python"
EMR_PYTHON = "python3.11"


@dataclass(frozen=True)
class Artifact:
    """One file of a recipe: its name and text (a shell script, JSON or YAML)."""

    name: str
    kind: Literal["shell", "json", "yaml"]
    text: str


@dataclass(frozen=True)
class Job:
    """What every target runs: the package, the config, the Spark settings."""

    base: str  # deploy.artifacts ("" on k8s: the image carries the package)
    wheel: str  # the wheel's file name
    args: tuple[str, ...]  # after the entry point, then the config's path on the driver
    conf: dict[str, str]
    packages: tuple[str, ...]

    def uri(self, name: str) -> str:
        return f"{self.base}/{name}"


def cluster_conf(conf: dict[str, str]) -> dict[str, str]:
    """A laptop config's Spark settings minus what a cluster sets itself."""
    kept = {k: v for k, v in conf.items() if k not in LOCAL_ONLY}
    if kept.get("spark.eventLog.dir", "").startswith("file:"):
        del kept["spark.eventLog.dir"]  # a laptop path; the platform keeps its own event logs
    return kept


def _shared(target: str, uri: str) -> bool:
    """A path every node of `target` reads (Databricks mounts Unity Catalog volumes)."""
    return is_remote(uri) or (target == "databricks" and uri.startswith("/Volumes/"))


def job(cfg: Config, target: str, until_idle: bool = False) -> Job:
    """The shared part of every recipe; fails naming the key a cluster run cannot do with."""
    if not _shared(target, cfg.sinks.output):
        raise ConfigError(
            f"sinks.output is {cfg.sinks.output!r}: on a cluster it must be a URI every node "
            "sees (gs://, s3a://, abfss://, hdfs://, dbfs:/ or /Volumes/ on Databricks)"
        )
    if cfg.source.format == "json" and not _shared(target, cfg.source.path):
        raise ConfigError(
            f"source.path is {cfg.source.path!r}: the executors read it, so on a cluster it "
            "must be a URI every node sees (or use source.format: kafka)"
        )
    if not PurePosixPath(cfg.sinks.sqlite_file).is_absolute():
        raise ConfigError(
            f"sinks.sqlite_file is {cfg.sinks.sqlite_file!r}: on a cluster it must be an "
            "absolute path on the driver's disk that outlives the job"
        )
    base = ""
    if target in ARTIFACT_SCHEMES:
        base = _require(cfg.deploy.artifacts, "deploy.artifacts", "where the package is uploaded")
        if not base.startswith(ARTIFACT_SCHEMES[target]):
            raise ConfigError(
                f"deploy.artifacts is {base!r}: on {target} it must start with "
                f"{' or '.join(ARTIFACT_SCHEMES[target])}"
            )
    size = cfg.deploy.size
    conf = cluster_conf(cfg.spark.conf) | {
        "spark.executor.instances": str(size.executors),
        "spark.executor.cores": str(size.executor_cores),
        "spark.executor.memory": size.executor_memory,
        "spark.driver.memory": size.driver_memory,
        # A stream keeps its executors: dynamic allocation would drop and re-add them.
        "spark.dynamicAllocation.enabled": "false",
    }
    idle = ("--until-idle",) if until_idle else ()
    if cfg.source.format == "kafka" and target != "databricks":  # its runtime has its own
        check_packages({"source.kafka.connector": cfg.source.kafka.connector})
    return Job(
        base=base.rstrip("/"),
        wheel=f"apistream-{version('apistream')}-py3-none-any.whl",
        args=("stream", *idle, "--output", cfg.sinks.output, "--config"),
        conf=dict(sorted(conf.items())),
        packages=(cfg.source.kafka.connector,) if cfg.source.format == "kafka" else (),
    )


def render(target: str, cfg: Config, until_idle: bool = False) -> list[Artifact]:
    """The artefacts of one target: the effective config (file and APISTREAM_* overrides
    resolved, laptop-only Spark settings left out; `${VAR}` secrets stay references), then
    the target's own."""
    if target not in TARGETS:
        raise ConfigError(f"unknown deploy target {target!r}: one of {', '.join(TARGETS)}")
    j = job(cfg, target, until_idle)
    make: dict[str, Callable[[Config, Job], list[Artifact]]] = {
        "dataproc": dataproc,
        "emr": emr,
        "databricks": databricks,
        "k8s": k8s,
    }
    tree = cfg.model_dump(mode="json")
    tree["spark"]["conf"] = cluster_conf(cfg.spark.conf)
    effective = yaml.safe_dump(tree, sort_keys=False)
    return [Artifact(CONFIG_NAME, "yaml", effective), *make[target](cfg, j)]


def _require(value: str | None, key: str, what: str) -> str:
    if not value:
        raise ConfigError(f"{key} is not set: {what} (see config/config.yaml, section deploy)")
    return value


def _sqlite_dir(cfg: Config) -> str:
    return str(PurePosixPath(cfg.sqlite_path).parent)


def _where(cfg: Config) -> list[str]:
    """Comment lines naming what the run writes where."""
    return [
        f"# lake: {cfg.path('lake')}  checkpoints: {cfg.path('checkpoints')}",
        f"# SQLite (on the driver's disk, must outlive the job): {cfg.sqlite_path}",
    ]


def _header(cfg: Config, *about: str) -> list[str]:
    return [
        "#!/usr/bin/env bash",
        *(f"# {line}" for line in about),
        *_where(cfg),
        "set -euo pipefail",
        'HERE="$(cd "$(dirname "$0")" && pwd)"',
    ]


def _upload(copy: Callable[[str, str], str], j: Job, *extra: str) -> list[str]:
    """Build the wheel (from the repository's root) and copy each file to deploy.artifacts,
    one copy command per file."""
    files = [
        (f"dist/{j.wheel}", j.uri(j.wheel)),
        (f"deploy/spark/{SUBMIT_SCRIPT}", j.uri(SUBMIT_SCRIPT)),
        (f'"$HERE/{CONFIG_NAME}"', j.uri(CONFIG_NAME)),
        *((f'"$HERE/{name}"', j.uri(name)) for name in extra),
    ]
    return [
        "# 1. Build the wheel (run this from the repository's root) and upload the artefacts:",
        "python3 -m pip wheel --no-deps -w dist .",
        *(copy(src, dst) for src, dst in files),
    ]


def _install_script(j: Job, copy: str, python: str, sqlite_dir: str, *before: str) -> str:
    """Run on the driver's node: the entry point and config in INSTALL_DIR, the package into
    `python`, the SQLite directory owned by the user the driver runs as."""
    q = shlex.quote
    return "\n".join(
        [
            "#!/usr/bin/env bash",
            "# Installs apistream on the node that runs the driver (the master node).",
            "set -euo pipefail",
            *before,
            f'sudo install -d -o "$(id -un)" {INSTALL_DIR} {q(sqlite_dir)}',
            f"{copy} {q(j.uri(j.wheel))} {INSTALL_DIR}/{j.wheel}",
            f"{copy} {q(j.uri(SUBMIT_SCRIPT))} {INSTALL_DIR}/{SUBMIT_SCRIPT}",
            f"{copy} {q(j.uri(CONFIG_NAME))} {INSTALL_DIR}/{CONFIG_NAME}",
            f"sudo {python} -m pip install {INSTALL_DIR}/{j.wheel}",
            "",
        ]
    )


def dataproc(cfg: Config, j: Job) -> list[Artifact]:
    d = cfg.deploy.dataproc
    project = _require(d.project, "deploy.dataproc.project", "the Google Cloud project")
    image = _require(
        d.image_version, "deploy.dataproc.image_version", "a Dataproc image with Spark 4"
    )
    conf = j.conf | ({"spark.jars.packages": ",".join(j.packages)} if j.packages else {})
    for key, value in conf.items():
        if "#" in value:
            raise ConfigError(f"spark.conf.{key}: '#' cannot be passed to gcloud --properties")
    # gcloud's list syntax with '#' as the separator (`gcloud topic escaping`): values hold commas.
    props = "^#^" + "#".join(f"{k}={v}" for k, v in conf.items())
    where = f"--project={project} --region={d.region}"
    install = j.uri("install.sh")
    lines = [
        *_header(
            cfg,
            f"apistream on Dataproc: cluster {d.cluster} in {project}/{d.region}; the driver",
            "runs on the master node beside its SQLite file.",
        ),
        *_upload(lambda src, dst: f"gcloud storage cp {src} {dst}", j, "install.sh"),
        "# 2. Once: the cluster; install.sh runs on its master node at creation. After a",
        "#    config change, run it there again:",
        f"#    gcloud compute ssh {d.cluster}-m {where.split()[0]} -- "
        f"'gcloud storage cat {install} | sudo bash'",
        f"gcloud dataproc clusters describe {d.cluster} {where} >/dev/null 2>&1 ||",
        f"  gcloud dataproc clusters create {d.cluster} {where} --image-version={image} "
        f"--num-workers={cfg.deploy.size.executors} --initialization-actions={install}",
        "# 3. The stream, as a job restarted when it fails:",
        f"gcloud dataproc jobs submit pyspark {j.uri(SUBMIT_SCRIPT)} {where} "
        f"--cluster={d.cluster} --max-failures-per-hour=5 --properties={shlex.quote(props)} "
        f"-- {shlex.join(j.args)} {INSTALL_DIR}/{CONFIG_NAME}",
        "",
    ]
    only_master = (
        '[[ "$(/usr/share/google/get_metadata_value attributes/dataproc-role)" == Master ]] '
        "|| exit 0  # an initialization action runs on every node"
    )
    script = _install_script(j, "gcloud storage cp", DATAPROC_PYTHON, _sqlite_dir(cfg), only_master)
    return [
        Artifact("install.sh", "shell", script),
        Artifact("dataproc.sh", "shell", "\n".join(lines)),
    ]


def emr(cfg: Config, j: Job) -> list[Artifact]:
    e = cfg.deploy.emr
    cluster = _require(e.cluster_id, "deploy.emr.cluster_id", "the EMR cluster id (j-...)")
    python = f"sudo dnf install -y {EMR_PYTHON} {EMR_PYTHON}-pip"
    install = _install_script(j, "aws s3 cp", EMR_PYTHON, _sqlite_dir(cfg), python)
    python_conf = {"spark.pyspark.driver.python": EMR_PYTHON, "spark.pyspark.python": EMR_PYTHON}
    stream = [
        "spark-submit",
        "--deploy-mode",
        "client",
        *[a for k, v in (j.conf | python_conf).items() for a in ("--conf", f"{k}={v}")],
        *(["--packages", ",".join(j.packages)] if j.packages else []),
        f"{INSTALL_DIR}/{SUBMIT_SCRIPT}",
        *j.args,
        f"{INSTALL_DIR}/{CONFIG_NAME}",
    ]
    # The shape `aws emr add-steps --steps file://...` reads (the CLI's, not the API's).
    steps = [
        {
            "Type": "CUSTOM_JAR",
            "Name": "apistream install",
            "ActionOnFailure": "CANCEL_AND_WAIT",
            "Jar": "command-runner.jar",
            "Args": ["bash", "-c", install],
        },
        {
            "Type": "CUSTOM_JAR",
            "Name": "apistream stream",
            "ActionOnFailure": "CONTINUE",
            "Jar": "command-runner.jar",
            "Args": stream,
        },
    ]
    run = [
        *_header(
            cfg,
            f"apistream on EMR cluster {cluster} ({e.region}): steps run on the master node,",
            "the driver beside its SQLite file.",
        ),
        *_upload(lambda src, dst: f"aws s3 cp {src} {dst}", j),
        "# 2. The install step, then the stream:",
        f"aws emr add-steps --region {e.region} --cluster-id {cluster} "
        '--steps "file://$HERE/emr-steps.json"',
        "",
    ]
    return [
        Artifact("emr-steps.json", "json", json.dumps(steps, indent=2) + "\n"),
        Artifact("emr.sh", "shell", "\n".join(run)),
    ]


def _on_driver(uri: str) -> str:
    """A Databricks artefact path as the driver reads it as a file (dbfs:/x is /dbfs/x)."""
    if uri.startswith("dbfs:/"):
        return "/dbfs/" + uri.removeprefix("dbfs:/").lstrip("/")
    return uri


def _databricks_fs(uri: str) -> str:
    """The path `databricks fs cp` takes (volumes as dbfs:/Volumes/...)."""
    return f"dbfs:{uri}" if uri.startswith("/Volumes/") else uri


def databricks(cfg: Config, j: Job) -> list[Artifact]:
    d = cfg.deploy.databricks
    runtime = _require(
        d.spark_version, "deploy.databricks.spark_version", "the Databricks Runtime key"
    )
    node = _require(d.node_type_id, "deploy.databricks.node_type_id", "the worker node type")
    # The runtime has the Kafka connector built in: no Maven library.
    spec = {
        "name": cfg.spark.app_name,
        "max_concurrent_runs": 1,
        "tasks": [
            {
                "task_key": "stream",
                "spark_python_task": {
                    "python_file": j.uri(SUBMIT_SCRIPT),
                    "parameters": [*j.args, _on_driver(j.uri(CONFIG_NAME))],
                },
                "libraries": [{"whl": j.uri(j.wheel)}],
                "new_cluster": {
                    "spark_version": runtime,
                    "node_type_id": node,
                    "num_workers": cfg.deploy.size.executors,
                    "spark_conf": {k: v for k, v in j.conf.items() if k not in SIZING},
                },
                # A retry runs on the same job cluster, whose disk still holds the SQLite file.
                "max_retries": 3,
                "min_retry_interval_millis": 60_000,
            }
        ],
    }
    job_id = "python3 -c 'import json, sys; print(json.load(sys.stdin)[\"job_id\"])'"
    run = [
        *_header(
            cfg,
            "apistream as a Databricks job (Jobs API 2.1): one task on a new job cluster.",
            "The SQLite file is on the driver's local disk, which a new job cluster does not",
            "keep: a later run stops with a clear error rather than redo the lake (README,",
            "Run on a cluster).",
        ),
        *_upload(lambda src, dst: f"databricks fs cp --overwrite {src} {_databricks_fs(dst)}", j),
        "# 2. Create the job (each run of this script creates one) and start it:",
        f'job_id=$(databricks jobs create --json "@$HERE/databricks-job.json" | {job_id})',
        'databricks jobs run-now "$job_id"',
        "",
    ]
    return [
        Artifact("databricks-job.json", "json", json.dumps(spec, indent=2) + "\n"),
        Artifact("databricks.sh", "shell", "\n".join(run)),
    ]


def k8s(cfg: Config, j: Job) -> list[Artifact]:
    k = cfg.deploy.k8s
    image = _require(k.image, "deploy.k8s.image", "an image built from deploy/k8s/Dockerfile")
    sqlite_dir = _sqlite_dir(cfg)
    size = cfg.deploy.size
    conf = {key: v for key, v in j.conf.items() if key not in (*SIZING, "spark.driver.memory")}
    if j.packages:
        conf["spark.jars.packages"] = ",".join(j.packages)
        conf["spark.jars.ivy"] = "/tmp/.ivy2"  # writable for the image's user
    config_dir = f"{INSTALL_DIR}/conf"
    config_map = f"{cfg.spark.app_name}-config"
    app: dict[str, Any] = {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": cfg.spark.app_name, "namespace": k.namespace},
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",  # the operator's: the driver is a pod
            "image": image,
            "mainApplicationFile": f"local://{INSTALL_DIR}/{SUBMIT_SCRIPT}",
            "arguments": [*j.args, f"{config_dir}/{CONFIG_NAME}"],
            "sparkVersion": version("pyspark"),
            "sparkConf": conf,
            "restartPolicy": {
                "type": "Always",
                "onFailureRetryInterval": 30,
                "onSubmissionFailureRetryInterval": 60,
            },
            # Mounted by the operator's webhook (on by default in operator 2.x).
            "volumes": [
                {"name": "sqlite", "persistentVolumeClaim": {"claimName": k.sqlite_claim}},
                {"name": "config", "configMap": {"name": config_map}},
            ],
            "driver": {
                "cores": 1,
                "memory": size.driver_memory,
                "serviceAccount": k.service_account,
                # The image's user (spark, uid 185) writes the SQLite file on the claim.
                "podSecurityContext": {"fsGroup": 185},
                "volumeMounts": [
                    {"name": "sqlite", "mountPath": sqlite_dir},
                    {"name": "config", "mountPath": config_dir},
                ],
            },
            "executor": {
                "instances": size.executors,
                "cores": size.executor_cores,
                "memory": size.executor_memory,
            },
        },
    }
    run = [
        *_header(
            cfg,
            f"apistream on Kubernetes ({k.master}) through the Spark operator; the driver",
            f"pod mounts claim {k.sqlite_claim} at {sqlite_dir} for its SQLite file.",
        ),
        "# 1. The image (run this from the repository's root):",
        "python3 -m pip wheel --no-deps -w dist .",
        f"docker build -f deploy/k8s/Dockerfile -t {image} . && docker push {image}",
        "# 2. The config, then the application:",
        f"kubectl -n {k.namespace} create configmap {config_map} "
        f'--from-file={CONFIG_NAME}="$HERE/{CONFIG_NAME}" --dry-run=client -o yaml'
        " | kubectl apply -f -",
        f'kubectl -n {k.namespace} apply -f "$HERE/spark-application.yaml"',
        "",
    ]
    return [
        Artifact("spark-application.yaml", "yaml", yaml.safe_dump(app, sort_keys=False)),
        Artifact("k8s.sh", "shell", "\n".join(run)),
    ]


def write_artifacts(artifacts: list[Artifact], folder: Path) -> None:
    """Write the artefacts into `folder` (created), the shell scripts executable."""
    folder.mkdir(parents=True, exist_ok=True)
    for a in artifacts:
        path = folder / a.name
        path.write_text(a.text)
        if a.kind == "shell":
            path.chmod(0o755)
