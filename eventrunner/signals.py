"""The loop's events as public blinker signals: observe every run in the process.

Each event is a signal the loop sends with ``sender=runner``, after that event's subscribers
ran (the way Flask's ``request_started`` works)::

    from eventrunner import signals

    @signals.epoch_end.connect
    def report(runner):
        print(runner.epoch_step, runner.epoch_metrics)

    with signals.loader_end.connected_to(record, sender=my_runner):  # one runner only, in tests
        my_runner.train(...)

Use a **signal receiver** to observe (dashboards, tests, audit logs): any code can connect, it
sees every runner, its order among receivers is undefined, and it should not change the run.
Use a :class:`~eventrunner.events.Callback` to act on a run (backward, metrics, selection,
saving): it runs in its ``order``, can be limited to loaders, saved in checkpoints, and
declares what it writes.

Cost: the loop looks at a signal's receivers when it compiles an event's calls (per event,
and per loader pass for the batch events), so a signal without receivers costs nothing per
batch; a receiver connected in the middle of a loader pass sees batch events from the next
pass on. blinker holds receivers weakly by default: keep a reference to a lambda or bound
method you connect, or pass ``weak=False``. Receivers are called synchronously.
"""

from __future__ import annotations

import blinker

from eventrunner.events import EVENTS

_namespace = blinker.Namespace()

experiment_start = _namespace.signal("experiment_start", doc="Before the first epoch.")
epoch_start = _namespace.signal("epoch_start", doc="Before an epoch's loaders run.")
loader_start = _namespace.signal("loader_start", doc="Before a loader's first batch.")
batch_start = _namespace.signal("batch_start", doc="Before handle_batch.")
batch_end = _namespace.signal("batch_end", doc="After a batch's subscribers (backward, step).")
loader_end = _namespace.signal("loader_end", doc="After a loader pass; loader_metrics final.")
epoch_end = _namespace.signal("epoch_end", doc="After an epoch: selection, early stop, save.")
experiment_end = _namespace.signal("experiment_end", doc="After the run, also a failed one.")
exception = _namespace.signal("exception", doc="A run failed; runner.exception holds why.")

checkpoint_saved = _namespace.signal(
    "checkpoint_saved",
    doc="A checkpoint file is durable (after fsync and rename); keywords: path (last.pth), "
    "files (every name it got), epoch (epochs done), position (inside-epoch place or None). "
    "Sent from the writer thread when saving in the background.",
)

#: Event name -> its signal.
SIGNALS: dict[str, blinker.NamedSignal] = {event: _namespace.signal(event) for event in EVENTS}
