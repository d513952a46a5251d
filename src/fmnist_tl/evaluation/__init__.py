"""What a saved model is worth: the test report (report.py), predictions for the user's own
images (predict.py), and exports checked against the Keras model (export.py)."""
