"""The actors: one per queue, all running :meth:`Executor.run_pending` on the current command
(alone in the process once earlier attempts died in shared ones, see :mod:`workers.attempt.isolation`).

There is one actor per queue so Dramatiq's in-memory priority puts a prefetched urgent
command ahead of prefetched bulk ones; the queues themselves keep bulk work from ever being
fetched ahead of urgent work.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from workers import constants
from workers.attempt.executor import Executor
from workers.attempt.isolation import ProcessGate
from workers.errors import MailopsError
from workers.queue.messages import actor_name_for
from workers.queue.middleware.execution import current_execution
from workers.store.command_store import CommandStore

#: Dramatiq priority of each queue's actor (lower runs first).
QUEUE_PRIORITY = {constants.QUEUE_URGENT: 0, constants.QUEUE_DEFAULT: 10, constants.QUEUE_BULK: 20}


def declare_actors(broker: dramatiq.Broker, executor: Executor, store: CommandStore) -> dict[str, Any]:
    """Register the actors on ``broker``; returns them by queue."""
    gate = ProcessGate()

    def execute(command_id: str) -> None:
        execution = current_execution()
        assert execution.command.id == command_id
        turn = (gate.alone(lambda: store.mark_alone(command_id, execution.attempt),
                           lambda: store.unmark_alone(command_id)) if execution.alone
                else gate.shared())
        try:
            with turn:
                execution.result, execution.pending = executor.run_pending(
                    execution.command, entry=execution.entry, start=execution.start, attempt=execution.attempt,
                    after_loss=execution.after_loss)
        except MailopsError as exc:
            # Expected failures are the Lifecycle middleware's to classify; letting them
            # propagate would make Dramatiq log each one as a crash with a traceback.
            execution.error = exc

    actors = {}
    for queue, priority in QUEUE_PRIORITY.items():
        decorate = dramatiq.actor(actor_name=actor_name_for(queue), queue_name=queue, priority=priority, broker=broker)
        actors[queue] = decorate(execute)
    return actors
