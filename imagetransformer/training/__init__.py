"""Training: named configurations, learning-rate schedules, the `tf.distribute` strategy factory and model
directories (config.json, weights, atomic writes) that `python -m imagetransformer.train` drives."""
