"""The web app's parts below app.py (which is only the page's layout and its wiring):

    backend.py    what serves, the training job, the admin rule and the web's path rule
    handlers.py   what each page event does: inputs → the values of the components it updates
    views.py      Markdown, HTML, tables and curves the page shows
    batch.py      a file of tweets in, a CSV of predictions out
    api.py        the Gradio named API (/classify, /train, ...) and the JSON API (/api/classify, /api/model)
    paths.py      which local paths a web request may name
    limits.py     the limits, in one place
"""
