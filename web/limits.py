"""The web app's limits: the one place for them (README "## The app" documents them)."""
MAX_TWEET_CHARS = 2_000            # longer text gets a message, not a truncated guess
MAX_BATCH_ROWS = 1_000             # tweets per uploaded file, and per POST /api/classify
MAX_UPLOAD_BYTES = 2 * 1024**2     # size of an uploaded file of tweets to classify
MAX_TRAIN_UPLOAD_BYTES = 50 * 1024**2  # size of an uploaded training file (the server's upload limit)
REVIEW_MAX_ROWS = 3_000            # training rows the Train tab's label review embeds (about a minute on 2 cores)
QUEUE_MAX_SIZE = 64                # Gradio requests waiting; beyond that: "Queue is full! Please try again."
CONCURRENCY = 2                    # Gradio requests that run at once (2 CPU cores)
CLASSIFY_CONCURRENCY = 16          # /classify requests that run at once: those waiting share a model call
API_MAX_WAITING = 64               # JSON API requests running or waiting; beyond that: HTTP 429
POLL_SECONDS = 1.0                 # how often an open page polls the training status
MODEL_WAIT_SECONDS = 30            # a request waits this long for the model that loads at start-up
RELOAD_AFTER_SECONDS = 60          # with no model to serve, try loading again this often
