"""The queue: the Dramatiq broker, consumer, actors, message and middleware; the only package that knows Dramatiq internals."""
