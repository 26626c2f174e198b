"""Ray Train jobs on a real local Ray cluster: `ray job submit`, GCS-emulator storage, a killed worker,
and bad configs that fail before any worker starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import MULTIMODAL, REPO, _free_port, ray_submit, tiny_config, write_tagged

pytest.importorskip("ray")


def _submit(cluster: dict, *args: str, **kwargs) -> subprocess.CompletedProcess | subprocess.Popen:
    return ray_submit(cluster, "ray_jobs.train", *args, **kwargs)


def _direct(cluster: dict, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The job's entry point run as a plain driver against the cluster (what `ray job submit` runs)."""
    return subprocess.run([sys.executable, "-m", "ray_jobs.train", "--address", cluster["gcs_address"], *args],
                          env={**cluster["env"], **(env or {})}, cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_job_submit_two_workers_with_data_and_checkpoints_in_gcs(ray_cluster, gcs_emulator, tagged_manifest):
    """A multi-modal model with a size head: tags and size targets go through DDP like images."""
    import gcsfs

    from landslide import storage
    from landslide.models.checkpoint import load_checkpoint

    endpoint, bucket = gcs_emulator
    fs = gcsfs.GCSFileSystem()
    fs.put(os.path.dirname(tagged_manifest), f"{bucket}/data", recursive=True)
    cfg = tiny_config(f"gs://{bucket}/data/{os.path.basename(tagged_manifest)}", "unused", name="gcs-run",
                      ray={"num_workers": 2, "checkpoints_to_keep": 1}, model=MULTIMODAL)
    storage.write_text(f"gs://{bucket}/configs/tiny.yaml", yaml.safe_dump(cfg))
    env_vars = {"STORAGE_EMULATOR_HOST": endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    args = ("--config", f"gs://{bucket}/configs/tiny.yaml", "--storage-path", f"gs://{bucket}/runs")
    proc = _submit(ray_cluster, *args, env_vars=env_vars)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "world_size=2" in out or "worker group of size 2" in out
    assert "epoch 2/2" in out and "run gcs-run: 2 epochs" in out

    run = f"gs://{bucket}/runs/gcs-run"
    checkpoints = sorted(p for p in fs.ls(run) if "checkpoint_epoch_" in p)
    # checkpoints_to_keep=1 keeps the best by val_loss, and Ray always keeps the latest as well
    assert 1 <= len(checkpoints) <= 2 and any(p.endswith("checkpoint_epoch_002") for p in checkpoints)
    for name in ("model.safetensors", "model_card.json", "train_state/optimizer.safetensors"):
        assert fs.exists(f"{checkpoints[-1]}/{name}")
    summary = json.loads(fs.cat(f"{run}/summary.json"))
    assert summary["world_size"] == 2 and summary["epochs_run"] == 2
    assert summary["ray"]["latest_checkpoint"].endswith("checkpoint_epoch_002")
    model, card = load_checkpoint(f"{run}/model")
    assert card.backbone == "baseline_cnn" and 0 < card.threshold < 1
    assert card.inputs == "image + tags" and model.size_classes == ("small", "medium", "large")
    assert summary["test_metrics_without_tags"] and summary["test_size_metrics"]["n"] >= 0
    history = json.loads(fs.cat(f"{run}/history.json"))
    assert all(h["train_size_loss"] >= 0 for h in history)  # size losses reduced over both ranks
    for name in ("eval/report.md", "eval/predictions_without_tags.csv", "tag_leakage.json"):
        assert fs.exists(f"{run}/{name}"), name

    # submitted again: the finished run is reported, nothing is retrained or overwritten
    before = {p: fs.info(p)["updated"] for p in fs.find(run)}
    again = _submit(ray_cluster, *args, env_vars=env_vars)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "already finished" in again.stdout
    assert {p: fs.info(p)["updated"] for p in fs.find(run)} == before


def _train_worker_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("ray::RayTrainWorker"):
                pids.append(int(entry.name))
    return pids


def test_killed_worker_is_replaced_and_training_resumes(ray_cluster, synth_manifest, tmp_path):
    from landslide.models.checkpoint import load_checkpoint

    epochs = 10
    cfg = tiny_config(synth_manifest, str(tmp_path / "fault"), name="fault",
                      train={"epochs": epochs}, ray={"num_workers": 2, "max_failures": 2},
                      eval={"bootstrap": 20, "cam_max_images": 0})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = _submit(ray_cluster, "--config", str(tmp_path / "c.yaml"), wait=False)
    try:
        # kill once Ray has registered a checkpoint (its snapshot names it), i.e. mid-run with state to resume
        _wait_for_registered_checkpoint(tmp_path / "fault", proc)
        victims = _train_worker_pids()
        assert len(victims) == 2, victims
        os.kill(victims[-1], signal.SIGKILL)
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-5000:]
    assert "resuming from checkpoint" in out
    summary = json.load(open(tmp_path / "fault" / "summary.json"))
    history = json.load(open(tmp_path / "fault" / "history.json"))
    assert [h["epoch"] for h in history] == list(range(epochs))  # no epoch lost or repeated
    assert summary["epochs_run"] == epochs
    model, card = load_checkpoint(str(tmp_path / "fault" / "model"))
    assert card.training["epochs_run"] == epochs


# runs the job's entry point on several argument lists in one interpreter (imports paid once), each with its
# own captured stdout/stderr and a fresh connection to the cluster; what `ray job submit` would run, in a loop
_ENTRY_POINT_LOOP = r"""
import contextlib, io, json, os, sys, traceback
import ray
from ray_jobs.train import main
results = []
for case in json.loads(sys.argv[1]):
    os.environ.update(case["env"])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(case["argv"])
        except BaseException:
            traceback.print_exc()
            code = None
    ray.shutdown()
    for key in case["env"]:
        os.environ.pop(key)
    results.append({"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
print("RESULTS " + json.dumps(results))
"""


def test_bad_configs_fail_before_any_worker_starts(ray_cluster, synth_manifest, tmp_path):
    def write(name, **sections):
        cfg = tiny_config(synth_manifest, str(tmp_path / name), **sections)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        return str(tmp_path / f"{name}.yaml")

    leaky = write_tagged(synth_manifest, "leaky-ray.csv", leaky=True)
    closed = f"http://127.0.0.1:{_free_port()}"
    cases = [  # (arguments, environment, what stderr must name)
        (["--config", write("bb", model={"backbone": "resnet9000"})], {}, ("model.backbone", "resnet9000")),
        (["--config", write("res", ray={"num_workers": 8})], {}, ("cannot be placed", "CPU: need 8")),
        (["--config", write("gpu", ray={"use_gpu": True})], {}, ("GPU",)),
        (["--config", write("leak", data={"train": leaky}, model={"tags": {"categorical": ["glc_trigger"]}})], {},
         ("tags leak the label", "glc_trigger")),
        (["--config", write("data", data={"train": str(tmp_path / "missing.csv")})], {}, ("missing.csv", "not found")),
        (["--config", write("bucket"), "--storage-path", "gs://nowhere/runs"], {"STORAGE_EMULATOR_HOST": closed},
         ("gs://nowhere/runs", "cannot access storage")),
    ]
    loop = [{"argv": ["--address", ray_cluster["gcs_address"], *argv], "env": env} for argv, env, _ in cases]
    proc = subprocess.run([sys.executable, "-c", _ENTRY_POINT_LOOP, json.dumps(loop)], env=ray_cluster["env"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "RESULTS " in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(proc.stdout.rsplit("RESULTS ", 1)[1])
    assert len(results) == len(cases)
    for (argv, _, needles), result in zip(cases, results):
        text = result["stderr"] + result["stdout"]
        assert result["returncode"] == 2, (argv, text[-3000:])
        assert "Traceback" not in text
        assert "preflight ok" not in text and "RayTrainWorker" not in text
        for needle in needles:
            assert needle in result["stderr"], (argv, result["stderr"][-2000:])
    assert not any(tmp_path.glob("*/checkpoint_epoch_*"))


def _wait_for_registered_checkpoint(run_dir: Path, proc: subprocess.Popen, min_epoch: int = 1) -> None:
    snapshot = run_dir / "checkpoint_manager_snapshot.json"
    deadline = time.time() + 240
    while True:
        assert proc.poll() is None, proc.stdout.read()[-4000:]
        assert time.time() < deadline, "no registered checkpoint within 240 s"
        try:
            latest = json.loads(snapshot.read_text())["latest_checkpoint_result"]
        except (OSError, ValueError, KeyError):
            latest = None
        if latest and latest["metrics"]["epoch"] >= min_epoch:
            return
        time.sleep(0.1)


def test_crashed_run_resumes_when_started_again(ray_cluster, synth_manifest, tmp_path):
    epochs = 10
    cfg = tiny_config(synth_manifest, str(tmp_path / "crash"), name="crash", train={"epochs": epochs},
                      ray={"num_workers": 2, "max_failures": 0}, eval={"bootstrap": 20, "cam_max_images": 0})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "ray_jobs.train", "--address", ray_cluster["gcs_address"], "--config",
           str(tmp_path / "c.yaml")]
    proc = subprocess.Popen(cmd, env=ray_cluster["env"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        _wait_for_registered_checkpoint(tmp_path / "crash", proc)
        os.kill(_train_worker_pids()[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, out[-3000:] + err[-3000:]
    assert "Ray Train run failed" in err and "submit again to resume" in err
    assert not (tmp_path / "crash" / "summary.json").exists()
    kept = sorted(p.name for p in (tmp_path / "crash").glob("checkpoint_epoch_*"))
    assert kept, "the crashed run's checkpoints must be kept"

    again = subprocess.run(cmd, env=ray_cluster["env"], cwd=REPO, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming from checkpoint" in again.stdout + again.stderr
    history = json.load(open(tmp_path / "crash" / "history.json"))
    assert [h["epoch"] for h in history] == list(range(epochs))


def test_study_with_folds_runs_on_ray_train(ray_cluster, synth_manifest, tmp_path):
    """A study config (cross-validated, test-time augmentation) through the Ray job: the same plan, files and
    report as the local `landslide experiment`."""
    cfg = tiny_config(synth_manifest, str(tmp_path / "study"), name="ray-study", eval={"tta": "flips"},
                      experiment={"kind": "study", "repeats": {"folds": 2}, "targets": {"f1": 0.9},
                                  "parts": [{"name": "bb", "kind": "compare", "backbones": ["baseline_cnn"]}]})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = _direct(ray_cluster, "--config", str(path))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "experiment ray-study (study): 2 variants, 0 failed" in proc.stdout
    for name in ("study.md", "study.json", "best_model/model_card.json", "bb/comparison.md", "bb/runs.csv",
                 "bb/variants/baseline_cnn/predictions_out_of_fold.csv"):
        assert (tmp_path / "study" / name).exists(), name
    summary = json.loads((tmp_path / "study" / "bb" / "variants" / "baseline_cnn" / "fold-1" / "summary.json")
                         .read_text())
    assert summary["tta"] == "flips" and summary["ray"] and summary["val_metrics"]
