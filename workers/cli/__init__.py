"""The ``mailops`` command line."""
