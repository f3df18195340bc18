"""The operator console: server-rendered pages over the same Redis the workers use.

``mailops console serve`` runs it (see :mod:`workers.cli.console`). Reads come from the read
models the CLI uses (:mod:`workers.metrics`, :mod:`workers.store.dead_letters`, :mod:`workers.attempt.holds`)
and from the indexes ``admit.lua`` and the ordering commit keep (:class:`workers.constants.Keys`
``command_index*``, ``holds_index``), a page at a time; actions go through the CLI's signed
operator path (:mod:`workers.cli.acting`) with the console user's name in the audit stream.
"""
