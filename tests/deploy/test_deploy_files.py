"""Static checks of deploy/: Dockerfiles, docker compose, Kubernetes manifests, deploy configs.

No container engine or cluster is needed: every file is parsed, every command is parsed by
the real ``nowcast`` argument parser, every configuration file it names is validated with the
schema its command uses, and every ``NOWCAST_*`` variable is checked against the settings
classes (values included) so that the deployment cannot drift from the code.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
#: the image's WORKDIR: relative paths in commands resolve against the repository root
WORKDIR = "/app"
DOCKERFILE_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


# ----------------------------------------------------------------------------- helpers
def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, f"{path}: dangling line continuation"
    return out


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in sorted(K8S.glob("*.yaml")) for d in load_yaml_docs(p) if p.name != "kustomization.yaml"]


def find(kind: str, name: str) -> dict[str, Any]:
    for _, d in k8s_docs():
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


@pytest.fixture(scope="module")
def cli_parser():
    from cli import build_parser

    return build_parser()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def repo_file(path: str) -> Path:
    """A path used inside the image, as a file of the repository (WORKDIR mirrors the repo root)."""
    p = Path(path)
    if p.is_absolute():
        assert str(p).startswith(WORKDIR + "/"), f"{path}: absolute paths must lie under {WORKDIR}"
        p = p.relative_to(WORKDIR)
    return ROOT / p


def validate_config(command: str, flag: str, path: str) -> Any:
    """Load ``path`` with the schema ``nowcast <command>`` uses; returns the validated model."""
    file = repo_file(path)
    assert file.is_file(), f"nowcast {command} {flag} {path}: no such file in the repository"
    if command == "ingest":
        from ingest.config import load_ingest_config

        return load_ingest_config(file)
    if command == "train":
        from nowcast.config import load_config
        from training.config import TrainConfig

        return load_config(TrainConfig, file)
    if command == "retrain":
        from training.retrain import load_retrain_config

        return load_retrain_config(file)
    if command == "evaluate":
        from training.dap.plan import load_plan

        return load_plan(file)
    raise AssertionError(f"no config schema known for nowcast {command}")


def check_nowcast_args(parser, args: list[str]) -> tuple[str, Any]:
    """Parse a ``nowcast`` argument vector with the real CLI parser; validate configs it names."""
    from cli import COMMANDS

    assert args and args[0] in COMMANDS, f"{args}: not a nowcast subcommand ({', '.join(COMMANDS)})"
    try:
        ns = parser.parse_args(args)
    except SystemExit as exc:  # argparse rejects unknown flags this way
        raise AssertionError(f"nowcast {' '.join(args)}: rejected by the CLI parser") from exc
    model = None
    for flag in ("--config", "--plan"):
        if flag in args:
            model = validate_config(args[0], flag, args[args.index(flag) + 1])
    return args[0], (ns, model)


def settings_env_ok(name: str) -> bool:
    """Is ``name`` a NOWCAST_* variable the code reads (service settings or storage options)?"""
    from nowcast.storage import ENV_VARS
    from service.settings import ServiceSettings

    if name in ENV_VARS:
        return True
    field = name.removeprefix("NOWCAST_").lower().split("__")[0]
    return field in ServiceSettings.model_fields


def service_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """ServiceSettings built from exactly these NOWCAST_* variables (validates their values)."""
    import os

    from service.settings import ServiceSettings

    for k in list(os.environ):
        if k.startswith("NOWCAST_"):
            monkeypatch.delenv(k)
    for k, v in env.items():
        if k.startswith("NOWCAST_"):
            monkeypatch.setenv(k, str(v))
    return ServiceSettings()


def check_storage_env(env: dict[str, str]) -> None:
    from nowcast import storage

    opts = storage.storage_options("s3://nowcast/x.zarr", None, environ={k: str(v) for k, v in env.items()})
    assert opts is not None and opts.get("endpoint_url"), "S3 endpoint not configured"


# ----------------------------------------------------------------------------- Dockerfiles
@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile(name: str) -> None:
    instr = parse_dockerfile(DEPLOY / name)
    defaults = dict(a.split("=", 1) for w, a in instr if w == "ARG" and "=" in a)  # build-arg defaults
    instr = [(w, re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1), m.group(0)), a)) for w, a in instr]
    words = [w for w, _ in instr]
    assert words[0] in ("FROM", "ARG"), f"{name}: must start with FROM"
    assert set(words) <= DOCKERFILE_INSTRUCTIONS, f"{name}: unknown instructions {set(words) - DOCKERFILE_INSTRUCTIONS}"
    args = dict(instr)
    runs = " ".join(a for w, a in instr if w == "RUN")
    pin = re.search(r"^torch==(\S+)", (ROOT / "constraints.txt").read_text(), re.M)
    assert pin, "constraints.txt pins torch"
    assert f"torch=={pin.group(1)}" in runs, f"{name}: torch must be installed at the constraints.txt pin {pin.group(1)}"
    assert "-c constraints.txt" in runs, f"{name}: install the project under constraints.txt"
    if name == "Dockerfile":
        assert "--index-url https://download.pytorch.org/whl/cpu" in runs
        assert args["FROM"].startswith("python:3.1")
    else:
        assert args["FROM"].startswith("nvidia/cuda:") and "runtime" in args["FROM"]
        assert "download.pytorch.org" not in runs  # the default PyPI (CUDA) build
    # every COPY source exists and is not excluded by the Dockerfile's own .dockerignore
    ignore = (DEPLOY / f"{name}.dockerignore").read_text().split()
    for w, a in instr:
        if w == "COPY":
            *srcs, _dest = a.split()
            for s in srcs:
                assert (ROOT / s).exists(), f"{name}: COPY {s}: not in the repository"
                top = s.split("/")[0] if "/" in s and not s.startswith("deploy/") else s
                assert f"!{top}" in ignore or f"!{top}/**" in ignore, f"{name}: {s} is excluded by {name}.dockerignore"
    assert args["USER"] not in ("root", "0"), f"{name}: run as a non-root user"
    assert yaml.safe_load(args["ENTRYPOINT"]) == ["nowcast"]
    from service.settings import ServiceSettings

    assert int(args["EXPOSE"]) == ServiceSettings.model_fields["port"].default
    assert "/v1/status" in args["HEALTHCHECK"]
    assert args["WORKDIR"] == WORKDIR


# ----------------------------------------------------------------------------- compose
def test_compose_services_and_commands(compose: dict[str, Any], cli_parser) -> None:
    services = compose["services"]
    for required in ("api", "ingest", "dask-scheduler", "dask-worker", "minio", "train", "retrain", "evaluate"):
        assert required in services, f"compose lacks service {required}"
    assert {s for s, d in services.items() if "trainer" in d.get("profiles", [])} >= {"train", "retrain", "evaluate"}
    seen: dict[str, Any] = {}
    for name, svc in services.items():
        for dep in svc.get("depends_on", []) or []:
            assert dep in services, f"{name} depends on unknown service {dep}"
        if svc.get("image", "").startswith("nowcast") and "entrypoint" not in svc:
            cmd, parsed = check_nowcast_args(cli_parser, list(svc["command"]))
            seen[name] = (cmd, parsed)
    assert seen["api"][0] == "serve" and seen["ingest"][0] == "ingest"
    assert {seen[s][0] for s in ("train", "retrain", "evaluate")} == {"train", "retrain", "evaluate"}

    # dask: the workers and the evaluation reach the scheduler where it listens
    sched = services["dask-scheduler"]
    assert sched["entrypoint"] == ["dask", "scheduler"]
    port = sched["command"][sched["command"].index("--port") + 1]
    worker = services["dask-worker"]
    assert worker["entrypoint"] == ["dask", "worker"]
    assert worker["command"][0] == f"tcp://dask-scheduler:{port}"
    assert worker["command"][worker["command"].index("--nthreads") + 1] == "1"
    assert seen["evaluate"][1][0].scheduler == f"tcp://dask-scheduler:{port}"


def test_compose_environment_matches_settings(compose: dict[str, Any], cli_parser, monkeypatch) -> None:
    services = compose["services"]
    for name, svc in services.items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: use a mapping for environment"
        for key in env:
            if key.startswith("NOWCAST_"):
                assert settings_env_ok(key), f"compose service {name}: {key} is not a ServiceSettings field nor a storage variable"
    api_env = services["api"]["environment"]
    settings = service_settings(api_env, monkeypatch)
    assert settings.run_ingest is False, "the api container must not start its own ingest"
    assert settings.host == "0.0.0.0"
    ports = [str(p) for p in services["api"]["ports"]]
    assert any(p.endswith(f":{settings.port}") for p in ports), f"api ports {ports} do not publish {settings.port}"
    assert f":{settings.port}/v1/status" in " ".join(services["api"]["healthcheck"]["test"])
    for name in ("api", "ingest", "dask-worker", "train", "retrain", "evaluate"):
        check_storage_env(services[name]["environment"])
        assert "minio" in services[name]["environment"]["AWS_ENDPOINT_URL"]

    # one observation store: the api reads what ingest writes, and training/evaluation use it
    ingest_cfg = validate_config("ingest", "--config", services["ingest"]["command"][2])
    assert settings.store == ingest_cfg.store.url
    for svc, flag in (("train", "--config"), ("retrain", "--config"), ("evaluate", "--plan")):
        cmd = services[svc]["command"]
        model = validate_config(cmd[0], flag, cmd[cmd.index(flag) + 1])
        store = model.data.store if svc in ("train", "evaluate") else model.store
        assert store == settings.store, f"{svc} uses store {store}, the api {settings.store}"
    bucket = settings.store.split("://", 1)[1].split("/")[0]
    assert services["create-bucket"]["entrypoint"][-1].endswith(f"/{bucket}")


# ----------------------------------------------------------------------------- kubernetes
def test_k8s_manifests_parse() -> None:
    docs = k8s_docs()
    assert docs
    for path, d in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(d), f"{path.name}: not a Kubernetes object"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", d["metadata"]["name"]), f"{path.name}: bad name"
        if d["kind"] in ("Deployment",):
            sel = d["spec"]["selector"]["matchLabels"]
            labels = d["spec"]["template"]["metadata"]["labels"]
            assert sel.items() <= labels.items(), f"{path.name}: selector does not match the pod labels"
        if d["kind"] == "Service" and d["spec"].get("selector"):
            assert any(
                dd["kind"] in ("Deployment", "Job") and d["spec"]["selector"].items() <= dd["spec"]["template"]["metadata"]["labels"].items()
                for _, dd in docs
            ), f"Service {d['metadata']['name']} selects no pods"
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for res in kust["resources"]:
        assert (K8S / res).is_file(), f"kustomization names missing {res}"


def _containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for _, d in k8s_docs():
        if d["kind"] in ("Deployment", "Job", "CronJob", "StatefulSet"):
            for c in pod_spec(d)["containers"]:
                out.append((d, c))
    return out


def test_k8s_commands_env_and_references(cli_parser, monkeypatch) -> None:
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for _, d in k8s_docs() if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: d.get("stringData", {}) for _, d in k8s_docs() if d["kind"] == "Secret"}
    for doc, c in _containers():
        where = f"{doc['kind']} {doc['metadata']['name']}"
        env: dict[str, str] = {}
        for src in c.get("envFrom", []):
            if "configMapRef" in src:
                env.update(config_maps[src["configMapRef"]["name"]])
            if "secretRef" in src:
                env.update(secrets[src["secretRef"]["name"]])
        env.update({e["name"]: e.get("value", "") for e in c.get("env", [])})
        for key in env:
            if key.startswith("NOWCAST_"):
                assert settings_env_ok(key), f"{where}: {key} is not a ServiceSettings field nor a storage variable"
        service_settings(env, monkeypatch)  # values validate
        command = c.get("command")
        if command != ["dask", "scheduler"]:  # everything else reads the object store
            check_storage_env(env)
        if command is None:  # the image entrypoint: nowcast
            check_nowcast_args(cli_parser, list(c["args"]))
        elif command == ["torchrun"]:
            args = list(c["args"])
            i = args.index("-m")
            assert args[i + 1] == "cli"
            check_nowcast_args(cli_parser, args[i + 2 :])
        else:
            assert command[0] == "dask", f"{where}: unexpected command {command}"


def test_k8s_api_probes_and_ports(monkeypatch) -> None:
    api = find("Deployment", "nowcast-api")
    c = pod_spec(api)["containers"][0]
    assert c["args"][0] == "serve"
    env = {e["name"]: e["value"] for e in c["env"]}
    settings = service_settings(env, monkeypatch)
    assert settings.run_ingest is False and settings.host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/v1/status"
        assert ports[get["port"]] == settings.port
    svc = find("Service", "nowcast-api")
    assert all(p["targetPort"] in ports for p in svc["spec"]["ports"])
    cm = find("ConfigMap", "nowcast-config")["data"]
    assert cm["NOWCAST_STORE"] == validate_config("ingest", "--config", find("Deployment", "nowcast-ingest")["spec"]["template"]["spec"]["containers"][0]["args"][2]).store.url


def test_k8s_single_writer_ingest() -> None:
    ingest = find("Deployment", "nowcast-ingest")
    assert ingest["spec"]["replicas"] == 1
    assert ingest["spec"]["strategy"]["type"] == "Recreate"
    assert pod_spec(ingest)["containers"][0]["args"][0] == "ingest"


def test_k8s_retrain_cronjob_and_evaluation_job() -> None:
    cron = find("CronJob", "nowcast-retrain")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    args = pod_spec(cron)["containers"][0]["args"]
    assert args[:2] == ["retrain", "--config"]
    cfg = validate_config("retrain", "--config", args[2])
    assert cron["spec"]["schedule"] == cfg.schedule.cron
    job = find("Job", "nowcast-evaluate")
    args = pod_spec(job)["containers"][0]["args"]
    assert args[0] == "evaluate" and "--plan" in args
    sched = find("Service", "nowcast-dask-scheduler")
    port = next(p["port"] for p in sched["spec"]["ports"] if p["name"] == "comm")
    assert args[args.index("--scheduler") + 1] == f"tcp://nowcast-dask-scheduler:{port}"
    worker = pod_spec(find("Deployment", "nowcast-dask-worker"))["containers"][0]
    assert worker["args"][0] == f"tcp://nowcast-dask-scheduler:{port}"
    assert worker["args"][worker["args"].index("--nthreads") + 1] == "1"


def test_k8s_torchrun_job() -> None:
    job = find("Job", "nowcast-train")
    spec = job["spec"]
    c = pod_spec(job)["containers"][0]
    assert c["command"] == ["torchrun"] and c["image"].endswith(":cuda")
    opts = dict(a.lstrip("-").split("=", 1) for a in c["args"] if a.startswith("--") and "=" in a)
    nnodes, nproc = int(opts["nnodes"]), int(opts["nproc_per_node"])
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == nnodes
    assert int(c["resources"]["limits"]["nvidia.com/gpu"]) == nproc
    assert opts["node_rank"] == "$(JOB_COMPLETION_INDEX)"
    subdomain = pod_spec(job)["subdomain"]
    assert opts["master_addr"] == f"{job['metadata']['name']}-0.{subdomain}"
    headless = find("Service", subdomain)
    assert headless["spec"]["clusterIP"] == "None"
    assert int(opts["master_port"]) in [p["port"] for p in headless["spec"]["ports"]]
    train_args = c["args"][c["args"].index("-m") + 2 :]
    assert train_args[train_args.index("--device") + 1] == "cuda"
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod_spec(job)["volumes"] if "persistentVolumeClaim" in v}
    for claim in claims:
        find("PersistentVolumeClaim", claim)


def test_deploy_docs_name_the_files() -> None:
    text = (DEPLOY / "README.md").read_text() + (ROOT / "docs" / "deploy.md").read_text()
    for p in sorted(K8S.glob("*.yaml")) + [DEPLOY / "Dockerfile", DEPLOY / "Dockerfile.cuda", DEPLOY / "docker-compose.yml"]:
        assert p.name in text, f"{p.name} is not documented in deploy/README.md or docs/deploy.md"
    # commands quoted in the docs parse with the real CLI parser
    from cli import COMMANDS, build_parser

    parser = build_parser()
    for line in re.findall(r"^\s*(?:\$ )?nowcast (\w[^\n`]*)$", text, re.M):
        args = shlex.split(line.split(" #")[0])
        if args[0] in COMMANDS and args[0] != "serve":
            try:
                parser.parse_args(args)
            except SystemExit as exc:
                raise AssertionError(f"docs: `nowcast {line}` does not parse") from exc
