"""The packed engine: configurations that share batch size, epochs and depth trained
together as one computation (a pack), each still a trial of its own.

- ``network``: the pack's network, every member's MLP as one set of tensors.
- ``epoch``: one epoch of a pack (its state, training, validation, members' results).
- ``tasks``: the Ray task that runs an epoch on a worker, and where a pack's files lie.
- ``run``: a job's packs from the first epoch to the last (``PackedRun``).

Nothing is imported here: Ray's workers import ``tasks`` (and through it ``epoch`` and
``network``) for every epoch they run, and need none of what the driver's ``run`` brings.
"""
