"""Load test: many concurrent clients classifying through the app's /classify API (gradio_client, or
Gradio's REST call API with --rest) or its JSON API (--json-api).

    python -m scripts.load_test --url http://127.0.0.1:7860 --clients 16 --requests 320 [--rest | --json-api]
    python -m scripts.load_test --url http://127.0.0.1:7860 --while-training --train-size 2000 --epochs 1

Bounded in count (--requests) and time (--timeout per request, --deadline for the whole test), for a
server on this machine only (loopback: it refuses other hosts). It prints one JSON object: requests
sent, answered, failed (and why), throughput, p50/p95/max latency, and with --while-training the
training job's state and steps before and after. Exit status 0 when every request was answered.
"""
from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

TWEETS = [
    "I love this new phone, best purchase all year!", "Stuck in traffic again. Great start to Monday...",
    "The meeting has been moved to 3pm.", "can't stop smiling today :)",
    "my flight got cancelled and nobody at the desk cares", "Does anyone know when the store opens?",
    "worst customer service ever, never again", "thanks everyone for the birthday wishes!!",
]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def client(url: str):
    """A gradio_client Client. It opens a new httpx client for every request, and each would build a
    verified TLS context from the CA bundle: 12 of the 15.5 s of CPU that 16 clients spent on 160
    requests. They share one, built once (`tls_context`), which verifies just the same."""
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=False, ssl_verify=tls_context())


@functools.cache
def tls_context():
    """httpx's default verified context (certifi's CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR), once; httpx
    takes an SSLContext wherever gradio_client passes its `ssl_verify` (typed bool) as `verify`."""
    import httpx

    return httpx.create_ssl_context()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class JsonClient:
    """One connection to the JSON API (`POST /api/classify`), asked the way a gradio_client is."""

    def __init__(self, url: str, timeout: float):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=timeout)

    def classify(self, text: str) -> dict:
        answer = self.http.post("api/classify", json={"text": text})
        answer.raise_for_status()
        return answer.json()

    def close(self) -> None:
        self.http.close()


class RestClient(JsonClient):
    """One connection to Gradio's REST call API for `api_name`: POST /gradio_api/call/<name> queues the
    event, its event stream then answers. The same queue and handler as gradio_client, without the
    threads each gradio_client runs: 16 of those on this machine's 2 cores cost the load test more CPU
    than the server (RESULTS.md "Under load, without the clients' cost")."""

    def __init__(self, url: str, timeout: float, api_name: str = "/classify"):
        super().__init__(url, timeout)
        self.path = "gradio_api/call" + api_name

    def classify(self, text: str) -> dict:
        queued = self.http.post(self.path, json={"data": [text]})
        queued.raise_for_status()
        with self.http.stream("GET", f"{self.path}/{queued.json()['event_id']}") as stream:
            event = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event in ("complete", "error"):
                    data = json.loads(line.removeprefix("data: "))
                    if event == "error":
                        raise RuntimeError((data or {}).get("error") or "the app answered with an error")
                    return data[0]
        raise RuntimeError("the event stream ended without an answer")


VIA = {"gradio_client": "/classify (gradio_client)", "rest": "/classify (Gradio's REST call API)",
       "json-api": "POST /api/classify"}


def run_load(url: str, clients: int = 8, requests: int = 64, timeout: float = 60.0, deadline: float = 300.0,
             texts: list[str] | None = None, api_name: str = "/classify", via: str = "gradio_client") -> dict:
    """`requests` classifications spread over `clients` concurrent clients (each its own connection
    and thread), `via` one of VIA: gradio_client's `api_name`, the same through Gradio's REST call API,
    or `POST /api/classify`; returns the counts, throughput and latencies (ms)."""
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"refusing to load-test {host}: this script only targets a server on this machine")
    if via not in VIA:
        raise SystemExit(f"via must be one of {', '.join(VIA)}, got {via!r}")
    texts = texts or TWEETS
    per_client = [requests // clients + (i < requests % clients) for i in range(clients)]
    with ThreadPoolExecutor(clients) as pool:  # connecting is not timed
        connected = list(pool.map(lambda _: connect(url, timeout, api_name, via), range(clients)))
    ask = ((lambda c, text: c.submit(text, api_name=api_name).result(timeout=timeout)) if via == "gradio_client"
           else (lambda c, text: c.classify(text)))
    latencies: list[float] = []
    errors: Counter = Counter()
    lock = threading.Lock()
    start_gate = threading.Barrier(clients)
    end_by = [0.0]

    def worker(i: int) -> None:
        start_gate.wait()
        for j in range(per_client[i]):
            if time.monotonic() > end_by[0]:
                with lock:
                    errors["not sent: deadline passed"] += per_client[i] - j
                return
            text = texts[(i * 7 + j) % len(texts)]
            started = time.perf_counter()
            try:
                result = ask(connected[i], text)
                assert result["label"] in ("negative", "neutral", "positive"), result
            except Exception as exc:  # counted, not raised: the test reports every kind of failure
                with lock:
                    errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
                continue
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    began = time.monotonic()
    end_by[0] = began + deadline
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
        wall = time.monotonic() - began
        list(pool.map(lambda c: c.close(), connected))  # each close waits up to 1 s for its heartbeat thread
    return {
        "clients": clients, "requests": requests, "answered": len(latencies), "failed": sum(errors.values()),
        "errors": dict(errors), "seconds": round(wall, 2),
        "throughput_per_s": round(len(latencies) / wall, 2) if wall else None,
        "p50_ms": _ms(statistics.median(latencies) if latencies else None),
        "p95_ms": _ms(percentile(latencies, 0.95)), "max_ms": _ms(max(latencies, default=None)),
    }


def connect(url: str, timeout: float, api_name: str, via: str):
    if via == "json-api":
        return JsonClient(url, timeout)
    return RestClient(url, timeout, api_name) if via == "rest" else client(url)


def _ms(value):
    return None if value is None else round(value, 1)


def quick_training(**settings) -> dict:
    """/train settings for a load test: no baseline or extra measurements; None = the app's default."""
    import dataclasses

    from finetune.config import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    quick = {"few_shot_k": 0, "measure_forgetting": False, **settings}
    return {k: v for k, v in quick.items() if k in fields and v is not None}


def start_training(url: str, settings: dict, wait_steps: int = 1, timeout: float = 300.0) -> dict:
    """Start a job through /train and wait until it has run `wait_steps` steps; returns its status."""
    c = client(url)
    try:
        answer = c.predict(api_name="/train", **settings)
        if not answer.get("accepted"):
            raise SystemExit(f"training was not started: {answer.get('message')}")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            status = c.predict(api_name="/status")
            if status["state"] != "running":
                raise SystemExit(f"training ended before the load test: {status.get('message')}")
            if (status.get("step") or 0) >= wait_steps:
                return status
            time.sleep(0.5)
        raise SystemExit("training did not reach its first steps in time")
    finally:
        c.close()


def job(url: str, action: str) -> dict:
    c = client(url)
    try:
        return c.predict(api_name=f"/{action}")
    finally:
        c.close()


def stop_and_wait(url: str, timeout: float = 120.0) -> float:
    """/stop the running job; seconds until /status no longer says running."""
    c = client(url)
    try:
        began = time.monotonic()
        c.predict(api_name="/stop")
        while c.predict(api_name="/status")["state"] == "running":
            if time.monotonic() - began > timeout:
                raise SystemExit(f"the job did not stop within {timeout:.0f} s")
            time.sleep(0.1)
        return round(time.monotonic() - began, 2)
    finally:
        c.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.load_test", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:7860", help="the app, on this machine (default: %(default)s)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default: %(default)s)")
    p.add_argument("--requests", type=int, default=320, help="classifications in all (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=60, help="seconds one request may take (default: %(default)s)")
    p.add_argument("--deadline", type=float, default=600, help="seconds for the whole test (default: %(default)s)")
    via = p.add_mutually_exclusive_group()
    via.add_argument("--json-api", dest="via", action="store_const", const="json-api", default="gradio_client",
                     help="ask POST /api/classify (the JSON API) instead of /classify through gradio_client")
    via.add_argument("--rest", dest="via", action="store_const", const="rest",
                     help="ask /classify through Gradio's REST call API with plain HTTP: the same queue as "
                          "gradio_client, for a fraction of the clients' CPU")
    p.add_argument("--while-training", action="store_true",
                   help="start a training job through /train first, measure while it runs, then stop it")
    p.add_argument("--train-size", type=int, default=2000, help="with --while-training (default: %(default)s)")
    p.add_argument("--epochs", type=float, default=1, help="with --while-training (default: %(default)s)")
    p.add_argument("--base-model", default=None, help="with --while-training: the model to train (default: the app's)")
    args = p.parse_args(argv)

    report = {"while_training": args.while_training, "api": VIA[args.via]}
    if args.while_training:
        settings = quick_training(train_size=args.train_size, epochs=args.epochs, base_model=args.base_model)
        before = start_training(args.url, settings)
        report["training_before"] = {k: before.get(k) for k in ("state", "run_id", "step", "total_steps")}
    report.update(run_load(args.url, args.clients, args.requests, args.timeout, args.deadline, via=args.via))
    if args.while_training:
        after = job(args.url, "status")
        report["training_after"] = {k: after.get(k) for k in ("state", "run_id", "step", "total_steps")}
        if after["state"] == "running":  # stop it, and time how long the stop takes
            report["stop_seconds"] = stop_and_wait(args.url)
    print(json.dumps(report, indent=2))
    return 0 if report["failed"] == 0 and report["answered"] == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
