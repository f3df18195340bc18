"""``mailops bench``: the whole pipeline measured next to a plain Dramatiq actor, against targets.

Modules: :mod:`.sandbox_proc` (the sandbox panels in their own process), :mod:`.baseline` (the
plain-Dramatiq floor), :mod:`.harness` (worker and sandbox subprocesses), :mod:`.measure`
(percentiles, RSS, Redis memory, completion times), :mod:`.scenarios` (the runs) and
:mod:`.report` (targets, table, JSON).
"""

from __future__ import annotations
