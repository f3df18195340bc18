"""The tools around the worker: the producer API, HTTP ingress, reconcile, the demo."""
