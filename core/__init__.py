"""What training and serving share: the labels, the run folder, model loading, few-shot prompting,
errors and the settings read from the environment. `finetune` and `inference` both import from here;
neither imports the other."""
