"""The web app's limits: the one place for them (README "## The app" and "Deploying as a public Space"
document them), and `Quota`, which counts what one client does."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

MAX_TWEET_CHARS = 2_000            # longer text gets a message, not a truncated guess
MAX_BATCH_ROWS = 1_000             # tweets per uploaded file, and per POST /api/classify
MAX_UPLOAD_BYTES = 2 * 1024**2     # size of an uploaded file of tweets to classify
MAX_TRAIN_UPLOAD_BYTES = 50 * 1024**2  # size of an uploaded training file (the server's upload limit)
MAX_BODY_BYTES = 4 * 1024**2       # any other request body (JSON): bigger ones get 413 before they are read
REVIEW_MAX_ROWS = 3_000            # training rows the Train tab's label review embeds (about a minute on 2 cores)
PREVIEW_MAX_ROWS = 50_000          # rows of each split the preview cleans (its first ones)
HUB_PREVIEW_ROWS = 1_000           # rows of each split a visitor's preview streams from a public Hub dataset
CHAT_MAX_TURNS = 20                # chat history a page sends back: the last turns kept, the rest dropped
QUEUE_MAX_SIZE = 64                # Gradio requests waiting; beyond that: "Queue is full! Please try again."
CONCURRENCY = 2                    # Gradio requests that run at once (2 CPU cores)
CLASSIFY_CONCURRENCY = 16          # /classify requests that run at once: those waiting share a model call
API_MAX_WAITING = 64               # JSON API requests running or waiting; beyond that: HTTP 429
API_THREADS = 16                   # JSON API model calls at once (threads of their own, not the server's pool)
POLL_SECONDS = 1.0                 # how often an open page polls the training status
MODEL_WAIT_SECONDS = 30            # a request waits this long for the model that loads at start-up
RELOAD_AFTER_SECONDS = 60          # with no model to serve, try loading again this often
CORRECTION_LIMITS = {60: 5, 24 * 3600: 50}  # a visitor's corrections: at most 5 a minute and 50 a day
KEEP_UPLOADS = 20                  # uploaded training files kept in the data folder (the newest)
DELETE_CACHE = (3600, 3600)        # Gradio's cached files (uploads, outputs): checked hourly, gone after an hour


class Quota:
    """At most `limits[window]` events per client in any `window` seconds, for each window; the clients
    it remembers are bounded (the longest idle forgotten first), and so is what it keeps of each."""

    def __init__(self, limits: dict[float, int], max_clients: int = 10_000):
        self.limits, self.max_clients = dict(sorted(limits.items())), max_clients
        self._times: OrderedDict[str, deque] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> str:
        """Count one event of `client` and return "", or refuse it: why, and when to try again."""
        now = time.monotonic()
        with self._lock:
            times = self._times.pop(client, None) or deque(maxlen=max(self.limits.values()))
            self._times[client] = times
            while len(self._times) > self.max_clients:
                self._times.popitem(last=False)
            for window, most in self.limits.items():
                recent = [t for t in times if now - t < window]
                if len(recent) >= most:
                    return (f"at most {most} per {_span(window)} from one person: try again in "
                            f"{_span(window - (now - recent[-most]))}")
            times.append(now)
            return ""


def _span(seconds: float) -> str:
    """60 → "minute", 86400 → "day"; otherwise hours, minutes or seconds."""
    named = {60: "minute", 3600: "hour", 86400: "day"}
    if seconds in named:
        return named[seconds]
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{max(1, round(seconds))} s"
