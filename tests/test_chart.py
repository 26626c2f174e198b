"""The Helm chart (charts/landslide) and the container image recipe (Dockerfile), without a cluster.

Helm itself lints and renders the chart (scripts/get_helm.py installs the pinned binary; `make test` does it).
Every rendered document is validated strictly: built-in kinds against the Kubernetes API schema
(kubernetes-validate), RayJob/RayService against the KubeRay v1.7.0 CRDs with ../shared/tools/k8s_validate.py
when ../shared is present. The rendered entry points, Serve import path and configs are checked against what
ray_jobs/ and serve/ actually accept, by parsing them with the same code.
"""

from __future__ import annotations

import base64
import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from landslide.config import RunConfig, ServeAppConfig, SweepConfig, load_config

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "landslide"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
BAD_VALUES = sorted((REPO / "tests" / "chart_bad_values").glob("*.yaml"))
SHARED_TOOLS = REPO.parent / "shared" / "tools"
KUBERAY_CRDS = REPO.parent / "shared" / "kuberay" / "v1.7.0" / "crds"
K8S_VERSION = "1.33"
RAY_KINDS = {"RayJob", "RayService", "RayCluster"}


@pytest.fixture(scope="session")
def helm() -> str:
    local = Path(sys.executable).parent / "helm"
    found = str(local) if local.is_file() else shutil.which("helm")
    if not found:
        pytest.skip("helm is not installed: run `python scripts/get_helm.py .venv` (make test does)")
    return found


def helm_run(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def render(helm: str, *values: Path, sets: tuple[str, ...] = (), strings: tuple[str, ...] = (),
           release: str = "geo") -> list[dict]:
    args = ["template", release, str(CHART), "--namespace", "hazards"]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    for s in strings:
        args += ["--set-string", s]
    out = helm_run(helm, *args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def pod_templates(doc: dict) -> list[dict]:
    """Every pod spec a RayJob/RayService makes: head, worker groups and (RayJob) the submitter."""
    spec = doc["spec"]
    cluster = spec.get("rayClusterSpec") or spec.get("rayClusterConfig")
    pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    if "submitterPodTemplate" in spec:
        pods.append(spec["submitterPodTemplate"])
    return pods


def values_file(name: str) -> Path:
    return CHART / "ci" / f"{name}-values.yaml"


# --- lint, render, validate -------------------------------------------------------------------------------


@pytest.mark.parametrize("values", CI_VALUES, ids=[p.stem for p in CI_VALUES])
def test_lint_and_strict_validation(helm, values):
    lint = helm_run(helm, "lint", "--strict", str(CHART), "-f", str(values))
    assert lint.returncode == 0, lint.stdout + lint.stderr

    docs = render(helm, values)
    assert {"ServiceAccount", "NetworkPolicy"} <= {d["kind"] for d in docs}
    for doc in docs:
        if doc["kind"] in RAY_KINDS:
            assert doc["apiVersion"] == "ray.io/v1"
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises naming the bad field


@pytest.mark.parametrize("values", CI_VALUES, ids=[p.stem for p in CI_VALUES])
def test_kuberay_objects_match_the_crds(helm, values, tmp_path):
    validator = SHARED_TOOLS / "k8s_validate.py"
    if not (validator.is_file() and KUBERAY_CRDS.is_dir()):
        pytest.skip("../shared/tools/k8s_validate.py or ../shared/kuberay/v1.7.0/crds is absent: RayJob and "
                    "RayService cannot be checked against the KubeRay CRD schemas here")
    docs = render(helm, values)
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    out = subprocess.run([sys.executable, str(validator), "--crds", str(KUBERAY_CRDS), "--k8s-version",
                          K8S_VERSION, str(rendered)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(docs)} passed, 0 failed" in out.stdout


def test_validators_catch_a_broken_manifest(helm):
    """The validation above is not vacuous: a typo'd field fails it."""
    docs = render(helm, values_file("serve"))
    secret = by_kind(docs, "Secret")[0]
    secret["metdata"] = secret.pop("metadata")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(secret, K8S_VERSION, strict=True)


@pytest.mark.parametrize("bad", BAD_VALUES, ids=[p.stem for p in BAD_VALUES])
def test_bad_values_are_refused_with_a_reason(helm, bad):
    expect = bad.read_text().splitlines()[0]
    assert expect.startswith("# expect: "), f"{bad.name}: first line must be '# expect: <error text>'"
    out = helm_run(helm, "template", "geo", str(CHART), "-f", str(bad))
    assert out.returncode != 0, f"{bad.name} rendered without error"
    assert expect[len("# expect: "):] in out.stderr, out.stderr
    assert "panic" not in out.stderr


def test_schema_is_in_step_with_the_library_configs():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "chart_schema.py"), "--check"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr


# --- what the chart runs is what the code accepts ---------------------------------------------------------


def test_job_entrypoints_and_configs_are_what_ray_jobs_accept(helm, tmp_path):
    docs = render(helm, values_file("gpu"))
    jobs = by_kind(docs, "RayJob")
    assert sorted(j["metadata"]["labels"]["app.kubernetes.io/component"] for j in jobs) == ["sweep", "train"]
    configmaps = {c["metadata"]["name"]: c for c in by_kind(docs, "ConfigMap")}
    for job in jobs:
        component = job["metadata"]["labels"]["app.kubernetes.io/component"]
        argv = shlex.split(job["spec"]["entrypoint"])
        assert argv[:2] == ["python", "-m"]
        module = importlib.import_module(argv[2])
        assert argv[2] == f"ray_jobs.{component}"
        args = module.build_parser().parse_args(argv[3:])  # SystemExit here = an argument the job rejects

        # --config points into the ConfigMap mounted on the head (where Ray runs the job's driver).
        head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        config_dir = str(Path(args.config).parent)
        mount = next(m for m in head["containers"][0]["volumeMounts"] if m["mountPath"] == config_dir)
        volume = next(v for v in head["volumes"] if v["name"] == mount["name"])
        configmap = configmaps[volume["configMap"]["name"]]
        assert configmap["metadata"]["name"] == job["metadata"]["name"]
        path = tmp_path / f"{component}.yaml"
        path.write_text(configmap["data"][Path(args.config).name])
        cfg = load_config(path, schema=RunConfig if component == "train" else SweepConfig)
        if component == "train":
            assert cfg.ray.use_gpu and args.storage_path == "gs://landslide-data/ray"
        else:
            assert cfg.ray.gpus_per_actor == 1 and cfg.output == "gs://landslide-data/sweeps/b3"
            assert cfg.adapt.batchnorm and cfg.adapt.batchnorm_tiles == 1024 and cfg.adapt.prior


def test_serve_config_is_what_serve_app_accepts(helm):
    docs = render(helm, values_file("gpu"))
    (service,) = by_kind(docs, "RayService")
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    (app,) = serve_config["applications"]
    module_name, _, attr = app["import_path"].partition(":")
    assert callable(getattr(importlib.import_module(module_name), attr))
    cfg = ServeAppConfig.model_validate(app["args"])
    assert cfg.device == "cuda" and cfg.classifier.num_gpus == 0.5

    # The token variable serve/app.py is told to read exists in every Ray container, from the named Secret.
    for pod in pod_templates(service):
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        ref = env[cfg.auth_token_env]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "landslide-api", "key": "token"}

    # Serve listens where the head's "serve" port and the Service point.
    port = serve_config["http_options"]["port"]
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"name": "serve", "containerPort": port} in head["ports"]
    assert service["spec"]["serveService"]["spec"]["ports"] == [{"name": "serve", "port": port}]
    assert serve_config["http_options"]["host"] == "0.0.0.0"
    assert serve_config["http_options"]["request_timeout_s"] > cfg.request_timeout_s


def test_values_defaults_for_the_endpoint_match_the_library():
    """values.yaml spells serve.app out in full; it must not drift from ServeAppConfig's defaults."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    app = values["serve"]["app"]
    defaults = ServeAppConfig(model="m").model_dump(mode="json")
    for key, value in app.items():
        if key == "model":
            continue
        if isinstance(value, dict):
            assert {**defaults[key], **value} == defaults[key], key
        else:
            assert value == defaults[key], key
    assert set(app) | {"auth_token_env"} >= set(defaults)


def test_generated_api_token_secret(helm):
    first = by_kind(render(helm, values_file("serve")), "Secret")
    second = by_kind(render(helm, values_file("serve")), "Secret")
    (a,), (b,) = first, second
    token = base64.b64decode(a["data"]["token"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{48}", token)
    assert a["data"] != b["data"], "each fresh install must get its own random token"
    values_text = "".join(p.read_text() for p in CI_VALUES) + (CHART / "values.yaml").read_text()
    assert token not in values_text

    docs = render(helm, values_file("serve"), sets=("serve.auth.existingSecret=my-token",))
    assert not by_kind(docs, "Secret")
    env = by_kind(docs, "RayService")[0]["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    assert any(e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "my-token"
               for e in env["containers"][0]["env"])

    docs = render(helm, values_file("serve"), sets=("serve.auth.enabled=false",))
    args = yaml.safe_load(by_kind(docs, "RayService")[0]["spec"]["serveConfigV2"])["applications"][0]["args"]
    assert not by_kind(docs, "Secret") and args.get("auth_token_env") is None


def test_job_names_follow_their_config(helm):
    """A changed config is a new RayJob (submitted RayJobs are immutable); an unchanged one keeps its name."""
    def train_job(*sets):
        return by_kind(render(helm, values_file("train"), sets=sets), "RayJob")[0]["metadata"]["name"]

    assert train_job() == train_job()
    assert train_job("train.config.train.epochs=3") != train_job()
    assert train_job("image.tag=0.2.0") != train_job()
    assert train_job("cluster.head.resources.limits.memory=16Gi") != train_job()  # the shared cluster counts too
    assert len(train_job()) <= 47  # KubeRay's limit for RayJob names
    long = by_kind(render(helm, values_file("train"), release="x" * 53), "RayJob")[0]["metadata"]["name"]
    assert len(long) <= 47


def test_component_cluster_overrides_merge_with_the_shared_cluster(helm):
    docs = render(helm, values_file("train"), strings=("cluster.env[0].name=OMP_NUM_THREADS",
                                                       "cluster.env[0].value=4"))
    job = by_kind(docs, "RayJob")[0]["spec"]["rayClusterSpec"]
    (group,) = job["workerGroupSpecs"]
    assert group["replicas"] == 2  # from train.cluster.workerGroups (lists replace)
    assert job["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # from the shared cluster (maps merge)
    for pod in (job["headGroupSpec"]["template"], group["template"]):
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["OMP_NUM_THREADS"] == "4" and env["HOME"].startswith("/tmp")


def test_gpu_groups_get_gpus_and_tolerations(helm):
    docs = render(helm, values_file("gpu"))
    for doc in by_kind(docs, "RayJob") + by_kind(docs, "RayService"):
        spec = doc["spec"].get("rayClusterSpec") or doc["spec"]["rayClusterConfig"]
        (group,) = spec["workerGroupSpecs"]
        pod = group["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        head = spec["headGroupSpec"]["template"]["spec"]
        assert "nvidia.com/gpu" not in head["containers"][0]["resources"]["limits"]
    jobs = by_kind(docs, "RayJob")
    assert all(j["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"] for j in jobs)


# --- secure defaults ---------------------------------------------------------------------------------------


def test_secure_defaults(helm):
    docs = render(helm, values_file("gpu")) + render(helm, values_file("serve"))
    pods = []
    for doc in docs:
        if doc["kind"] in RAY_KINDS:
            cluster = doc["spec"].get("rayClusterSpec") or doc["spec"]["rayClusterConfig"]
            pods += [{**p, "autoscaling": cluster.get("enableInTreeAutoscaling", False)} for p in pod_templates(doc)]
    assert any(p["autoscaling"] for p in pods) and not all(p["autoscaling"] for p in pods)
    pods += [{"spec": d["spec"]} for d in by_kind(docs, "Pod")]  # the helm test pod
    assert len(pods) >= 10
    for pod in pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        # Only the autoscaler sidecar (head of an autoscaling cluster) talks to the Kubernetes API.
        autoscaler_head = any(c["name"] == "ray-head" for c in spec["containers"]) and pod.get("autoscaling")
        assert spec["automountServiceAccountToken"] is bool(autoscaler_head)
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert "limits" in container["resources"]
            assert all("value" not in e or "TOKEN" not in e["name"] for e in container.get("env", []))

    for doc in docs:
        if doc["kind"] in RAY_KINDS:
            cluster = doc["spec"].get("rayClusterSpec") or doc["spec"]["rayClusterConfig"]
            assert cluster["authOptions"] == {"mode": "token"}
            assert cluster["headGroupSpec"]["serviceType"] == "ClusterIP"
            if "autoscalerOptions" in cluster:
                assert cluster["autoscalerOptions"]["securityContext"]["allowPrivilegeEscalation"] is False
    assert all(d["spec"].get("type", "ClusterIP") == "ClusterIP" for d in by_kind(docs, "Service"))


def test_network_policy_keeps_the_dashboard_inside(helm):
    docs = render(helm, values_file("serve"))
    (policy,) = by_kind(docs, "NetworkPolicy")
    release = {"app.kubernetes.io/name": "landslide", "app.kubernetes.io/instance": "geo"}
    assert policy["spec"]["podSelector"]["matchLabels"] == release
    # Every Ray pod (and submitter) carries the labels the policy selects.
    for doc in by_kind(docs, "RayService"):
        for pod in pod_templates(doc):
            assert release.items() <= pod["metadata"]["labels"].items()
    for rule in policy["spec"]["ingress"]:
        ports = {p["port"] for p in rule.get("ports", [])}
        if not ports or 8265 in ports:  # all ports, or the dashboard/job API: never from just anyone
            assert rule.get("from"), rule
            for peer in rule["from"]:
                assert peer.get("podSelector", {}).get("matchLabels"), peer
    endpoint = next(r for r in policy["spec"]["ingress"] if {p["port"] for p in r.get("ports", [])} == {8000})
    assert endpoint["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "ingress-nginx"}}}]


# --- the image agrees with the lock file and the chart ------------------------------------------------------


def lock_pin(name: str) -> str:
    match = re.search(rf"^{re.escape(name)}(?:\[[^\]]*\])?==([^\s;\\]+)", (REPO / "requirements.lock").read_text(),
                      re.MULTILINE)
    assert match, f"{name} is not pinned in requirements.lock"
    return match.group(1)


def test_image_chart_and_lock_agree_on_versions():
    import ray
    import torch

    import landslide

    dockerfile = (REPO / "Dockerfile").read_text()
    lock_python = re.search(r"--python-version (\d+\.\d+)", (REPO / "requirements.lock").read_text()).group(1)
    docker_python = re.search(r"^ARG PYTHON_VERSION=(\S+)$", dockerfile, re.MULTILINE).group(1)
    assert docker_python == lock_python == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert all(line.split()[1].startswith("python:${PYTHON_VERSION}-") for line in dockerfile.splitlines()
               if line.startswith("FROM "))

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["rayVersion"] == lock_pin("ray") == ray.__version__
    assert lock_pin("torch") == torch.__version__.split("+")[0]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"] == landslide.__version__

    # Python packages come from the lock only, hash-checked; nothing else is pip-installed with its own version.
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert any("--require-hashes -r requirements.lock" in line for line in installs)
    assert all("requirements.lock" in line or "--no-deps" in line for line in installs), installs


def test_image_runs_what_the_chart_expects():
    dockerfile = (REPO / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    user = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    assert user and user[-1] == (str(values["cluster"]["podSecurityContext"]["runAsUser"]),
                                 str(values["cluster"]["podSecurityContext"]["runAsGroup"]))
    assert user[-1][0] != "0"
    # The modules the chart runs (ray_jobs.train, ray_jobs.sweep, serve.app) are copied and importable.
    for package in ("ray_jobs", "serve"):
        assert re.search(rf"^COPY {package} \./{package}$", dockerfile, re.MULTILINE)
        assert (REPO / package / "__init__.py").is_file()
    assert "PYTHONPATH=/app" in dockerfile and re.search(r"^WORKDIR /app$", dockerfile, re.MULTILINE)
    # KubeRay's injected probes need bash and wget; cv2 (grad-cam's opencv-python) needs libGL, GLib and xcb.
    for package in ("wget", "libgl1", "libglib2.0-0", "libxcb1"):
        assert re.search(rf"apt-get install [^\n]*{re.escape(package)}\b", dockerfile), package
    for source in re.findall(r"^COPY (?!--from)(\S+) ", dockerfile, re.MULTILINE):
        assert (REPO / source).exists(), source
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_kuberay_version_matches_the_crds_used():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["annotations"]["landslide.io/kuberay-version"] == "1.7.0" == KUBERAY_CRDS.parent.name.lstrip("v")
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert re.fullmatch(schema["properties"]["rayVersion"]["pattern"], "2.52.0")
    assert not re.fullmatch(schema["properties"]["rayVersion"]["pattern"], "2.51.0")


def documented_values() -> set[str]:
    """Value paths in the first column of the chart README's values table (`a.b` / `c` means a.b and a.c)."""
    names = set()
    for line in (CHART / "README.md").read_text().split("\n## Values\n", 1)[1].splitlines():
        if not line.startswith("| `"):
            continue
        keys = re.findall(r"`([^`]+)`", line.split("|")[1])
        for i, key in enumerate(keys):
            names.add(key if i == 0 or "." in key else keys[0].rsplit(".", 1)[0] + "." + key)
    return names


def test_chart_readme_documents_every_value():
    documented = documented_values()

    def generic(path: str) -> str:
        return re.sub(r"^(train|sweep|serve)\.(job|cluster)\b", r"<component>.\2", path)

    def check(node, path: str) -> list[str]:
        if path and (path in documented or generic(path) in documented):
            return []
        if isinstance(node, dict) and node:
            return [m for k, v in node.items() for m in check(v, f"{path}.{k}" if path else k)]
        if isinstance(node, list) and node and isinstance(node[0], dict) and path + "[]." + next(iter(node[0])) \
                in documented:
            return [m for k, v in node[0].items() for m in check(v, f"{path}[].{k}")]
        return [path]

    missing = check(yaml.safe_load((CHART / "values.yaml").read_text()), "")
    assert not missing, f"values missing from charts/landslide/README.md: {missing}"


def render_notes(helm: str, values: Path, tmp_path: Path) -> str:
    """NOTES.txt as `helm install` prints it (which needs a cluster): rendered with tpl from a chart copy."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        'kind: Notes\ntext: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n')
    out = helm_run(helm, "template", "geo", str(chart), "--namespace", "hazards", "-f", str(values),
                   "--show-only", "templates/zz-notes.yaml")
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)["text"]


@pytest.mark.parametrize("values", CI_VALUES, ids=[p.stem for p in CI_VALUES])
def test_notes_name_what_was_installed(helm, values, tmp_path):
    notes = render_notes(helm, values, tmp_path)
    docs = render(helm, values)
    kinds = {d["kind"] for d in docs}
    assert ("Nothing to run yet" in notes) == (not kinds & RAY_KINDS)
    assert ("kubectl get rayjobs" in notes) == ("RayJob" in kinds)
    for service in by_kind(docs, "RayService"):
        assert f"kubectl get rayservice {service['metadata']['name']} -n hazards" in notes
        ingress = by_kind(docs, "Ingress")
        url = f"https://{ingress[0]['spec']['rules'][0]['host']}" if ingress else "http://127.0.0.1:8000"
        assert f"URL: {url}/" in notes and f"{url}/v1/classify" in notes
        assert (f"svc/{service['spec']['serveService']['metadata']['name']} 8000:8000" in notes) == (not ingress)
        secret = by_kind(docs, "Secret")
        secret_name = secret[0]["metadata"]["name"] if secret else "landslide-api"
        assert f"kubectl get secret {secret_name} -n hazards" in notes
