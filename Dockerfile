# Tweet sentiment app: `docker build -t tweet-sentiment . && docker run -p 7860:7860 tweet-sentiment`
# Also the image of a Hugging Face Docker Space (README front matter `sdk: docker`, `app_port: 7860`).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Spaces run the container as uid 1000; runs and the HF cache live in /data (a Space's persistent
# storage mounts there; with `docker run`, mount a volume on it to keep runs across containers)
RUN useradd --create-home --uid 1000 user \
    && mkdir -p /data/runs /data/hf-cache \
    && chown -R user:user /data

USER 1000:1000
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    RUNS_DIR=/data/runs \
    HF_HOME=/data/hf-cache \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860
WORKDIR /home/user/app

# torch first, the CPU build at the version pinned in requirements.txt (PyPI's Linux wheel pulls CUDA),
# then the other pins (torch is then already satisfied)
COPY --chown=1000:1000 requirements.txt requirements-bundled.txt ./
RUN pip install --user --index-url https://download.pytorch.org/whl/cpu "$(grep -E '^torch==' requirements.txt)" \
    && pip install --user -r requirements.txt \
    && pip install --user --no-deps -r requirements-bundled.txt

COPY --chown=1000:1000 . .

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/health', timeout=8)"]
CMD ["python", "app.py"]
