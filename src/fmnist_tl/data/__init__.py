"""Fashion-MNIST: where it comes from and how it is checked (sources.py), the tf.data pipeline
a fit reads (pipeline.py), and the user's own images made to look like it (images.py)."""
