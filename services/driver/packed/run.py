"""Running a job's trials as packs: configurations that share batch size, epochs and
depth train together in one Ray task per epoch, each still a trial of its own.

The driver draws the configurations with Tune's variant generator, groups them into
packs, and hands each pack's epochs to Ray as tasks on warm workers, the packs taking
turns an epoch at a time. After every epoch each member's result goes to Tune's own
scheduler (ASHA, the median rule, FIFO) as a trial's would; a member it stops leaves the
pack at that epoch boundary, and the pack's work shrinks with it. Packs of one kind
thinned out so meet at an epoch's end and merge: their survivors pay for one pack's
steps. Every member's rows, history and best checkpoint are kept as an unpacked trial's
are. A pack's state is saved after every epoch, so that a job whose driver died resumes
each pack where it was (merges included), and runs no finished member again.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from services.driver import search
from services.driver.packed.epoch import (
    PackKey,
    PackState,
    pack_key,
    state_from_payload,
)
from services.driver.packed.network import member_bytes
from services.driver.packed.tasks import (
    PACKS_FOLDER,
    checkpoint_folder,
    committed_file,
    merged_file,
    state_file,
    train_epoch,
)
from services.driver.progress import TrialProgress
from services.driver.training import TrialPlan
from shared.job_views import BestTrial
from shared.model import embedding_layout
from shared.spec import JobSpec
from shared.storage import StoragePath

log = logging.getLogger(__name__)
STOP_CHECK_INTERVAL_S = 0.5
PACK_LIMIT_CPU = 64
PACK_LIMIT_GPU = 512
# Unless TUNEFLEET_PACK_MEMORY_BYTES says, a pack may take this share of the memory
# Ray gives tasks on a node (its "memory" resource), split among the node's slots.
PACK_MEMORY_SHARE = 0.5
PLAN_FILE = "packs.json"


@dataclass
class _Pack:
    index: int
    configs: dict[str, dict[str, Any]]  # trial id -> config, of the members still in it
    state: PackState | Any  # a PackState, or Ray's reference to the one an epoch made
    last: dict[str, dict[str, Any]] = field(default_factory=dict)  # last result each
    ended: set[str] = field(default_factory=set)  # members the next epoch leaves out
    node_id: str | None = None  # the node its last epoch ran on
    epoch: int = 0  # epochs done
    # Packs of its kind, after the same epoch, that its next epoch takes in (their
    # states: PackStates or Ray's references).
    absorbed: list[Any] = field(default_factory=list)
    steps: int = 0  # steps an epoch of it takes

    @property
    def key(self) -> PackKey:
        return pack_key(next(iter(self.configs.values())))


class _NoController:
    """What Tune's schedulers ask of the controller: packed members are never paused,
    so no trial waits for another's slot."""

    def get_live_trials(self) -> list[Trial]:
        return []


class PackedRun:
    """One job's packed trials, from the first epoch (or a resumed one) to the last."""

    def __init__(
        self,
        job_id: str,
        spec: JobSpec,
        plan: TrialPlan,
        experiment_dir: StoragePath,
        progress: TrialProgress,
        should_stop: Callable[[], bool],
        autoscaler_slots: int = 0,
        memory_bytes: int = 0,
        live_spec: Callable[[], JobSpec] | None = None,
        configurations: list[dict[str, Any]] | None = None,
    ) -> None:
        self._job_id = job_id
        # What to train (a warm start leaves some out); default: the search's every one.
        self._to_train = configurations
        # How many configurations the search has drawn (a warm start's carried included);
        # raising a random search's num_samples draws on from there.
        self._drawn = 0
        # The spec as last edited (PATCH /jobs/{id}): its concurrency and time budget.
        self._live_spec = live_spec or (lambda: spec)
        # The bytes one pack may take; 0: from the nodes' memory (see _memory_budget).
        self._memory_bytes = memory_bytes
        # Slots the autoscaler can add: packs beyond the alive nodes' slots wait for
        # nodes, and waiting tasks are what makes the autoscaler start them.
        self._autoscaler_slots = autoscaler_slots
        self._spec = spec
        self._plan = plan
        self._dir = experiment_dir
        self._progress = progress
        self._should_stop = should_stop
        self._scheduler = search.scheduler(spec)
        self._scheduler.set_search_properties(plan.metric, plan.mode)
        self._controller = _NoController()
        self._trials: dict[str, Trial] = {}
        self._time_total_s: dict[str, float] = {}
        self.errors: list[str] = []
        self._configs: dict[str, dict[str, Any]] = {}
        self._packs: list[list[str]] = []
        self._node_slots: dict[str, int] = {}
        # Trial id -> its result.json lines not written yet (a bucket's, see _write_result).
        self._lines: dict[str, list[str]] = {}
        self._pack_epochs, self._recording_s = 0, 0.0
        self._limits: tuple[int, int] | None = None  # pack size, memory budget

    def plan(self) -> str:
        """Draw the configurations and form the packs (or read them back on resume);
        says how, for the job record."""
        self._configs, self._packs = self._plan_packs()
        largest = max((len(p) for p in self._packs), default=0)
        return f"packed: {len(self._packs)} packs of up to {largest} configurations"

    def run(self) -> bool:
        """Train every pack to its end; False if stopped first (cancel, lost lease)."""
        configs, packs = self._configs, self._packs
        self._replay_history(configs)
        plan_ref = ray.put(self._plan)
        absorbed = self._absorbed(len(packs))
        resumed = [
            self._resumable(index, packs, absorbed[index], configs)
            for index in range(len(packs))
            if index in absorbed
        ]
        ready = [pack for pack in resumed if pack is not None and pack.configs]
        ready += self._draw_more(self._spec)  # an edit its last attempt did not draw
        self._node_slots = self._slots_per_node()
        largest = max((len(p.configs) for p in ready), default=1)
        slots = self._slots(largest)
        started = time.monotonic()
        running: dict[Any, _Pack] = {}
        try:
            while ready or running:
                if self._should_stop():
                    return False
                edited = self._live_spec()
                if edited is not self._spec:  # packs start as the new limit allows
                    ready += self._draw_more(edited)
                    self._spec = edited
                    slots = self._slots(largest)
                out_of_time = (
                    self._spec.time_budget_s is not None
                    and time.monotonic() - started > self._spec.time_budget_s
                )
                if out_of_time:
                    self._progress.stop_for("time_budget")
                if self._progress.stopped_by is not None:  # a rule of the job's ended it
                    self._end_all([*ready, *running.values()])
                    return True
                while ready and len(running) < slots:
                    pack = self._next(ready, running.values())
                    running[self._submit(pack, plan_ref)] = pack
                done, _ = ray.wait(list(running), num_returns=1, timeout=STOP_CHECK_INTERVAL_S)
                for ref in done:
                    recording = time.perf_counter()
                    pack = running.pop(ref)
                    if self._epoch_done(pack, ref):
                        ready.append(pack)
                    self._recording_s += time.perf_counter() - recording
                    self._pack_epochs += 1
        finally:
            # The driver's share of every pack epoch: results in, the next epoch out.
            log.info(
                "job %s: %d pack epochs, %.1f s recording their results",
                self._job_id, self._pack_epochs, self._recording_s,
            )  # fmt: skip
            for ref in running:
                ray.cancel(ref)
            del plan_ref
            for trial_id in list(self._lines):
                self._flush_lines(trial_id)
        return True

    def best(self) -> tuple[BestTrial, StoragePath] | None:
        """The best trial and its checkpoint folder, if any trial reported a result."""
        best = self._progress.best
        if best is None:
            return None
        return best, checkpoint_folder(self._dir, best.trial_id)

    # -- packs -----------------------------------------------------------------------

    def _plan_packs(self) -> tuple[dict[str, dict[str, Any]], list[list[str]]]:
        """The job's configurations and packs: drawn once, then read back on resume
        (so that a resumed job packs the same way on a cluster of another size)."""
        path = self._dir / PLAN_FILE
        if path.is_file():
            saved = json.loads(path.read_text())
            self._drawn = saved.get("drawn", self._spec.trial_count())
            return saved["trials"], saved["packs"]
        drawn = self._to_train
        if drawn is None:
            drawn = search.configurations(self._spec, self._plan.seed)
        self._drawn = self._spec.trial_count()
        configs = self._numbered(drawn, 0)
        packs = self._grouped(configs, len(configs))
        self._dir.mkdir(parents=True, exist_ok=True)
        self._save_plan(configs, packs)
        return configs, packs

    def _numbered(self, drawn: list[dict[str, Any]], start: int) -> dict[str, dict[str, Any]]:
        """Configurations by trial id: the job's id's first characters and a number."""
        prefix = self._job_id[:8]
        return {f"{prefix}_{start + i:05d}": config for i, config in enumerate(drawn)}

    def _grouped(self, configs: dict[str, dict[str, Any]], trials: int) -> list[list[str]]:
        """Configurations that share a pack key as packs of even size (within the pack
        limit for a job of ``trials``), longest first (most steps per epoch), so that
        the last pack to finish is short."""
        groups: dict[PackKey, list[str]] = {}
        for trial_id, config in configs.items():
            groups.setdefault(pack_key(config), []).append(trial_id)
        packs = []
        for members in groups.values():
            limit = self._pack_limit([configs[m] for m in members], trials)
            count = math.ceil(len(members) / limit)
            even = math.ceil(len(members) / count)
            packs += [members[start : start + even] for start in range(0, len(members), even)]
        rows = len(self._plan.data.y_train)

        def steps(members: list[str]) -> float:
            batch_size, epochs, *_ = pack_key(configs[members[0]])
            return -epochs * math.ceil(rows / batch_size)

        packs.sort(key=steps)
        return packs

    def _save_plan(self, configs: dict[str, dict[str, Any]], packs: list[list[str]]) -> None:
        plan = {"trials": configs, "packs": packs, "drawn": self._drawn}
        (self._dir / PLAN_FILE).write_text(json.dumps(plan))

    def _draw_more(self, spec: JobSpec) -> list[_Pack]:
        """New packs of the configurations a random search draws past those drawn so far,
        when its num_samples was raised (PATCH /jobs/{id}); Tune's variant generator draws
        the same first ones for any num_samples, so these are the ones a job submitted
        with the higher num_samples would have had."""
        if spec.search.algorithm != "random" or spec.trial_count() <= self._drawn:
            return []
        more = search.configurations(spec, self._plan.seed)[self._drawn :]
        configs = self._numbered(more, len(self._configs))
        packs = self._grouped(configs, len(self._configs) + len(configs))
        first = len(self._packs)
        self._drawn = spec.trial_count()
        self._configs.update(configs)
        self._packs += packs
        self._save_plan(self._configs, self._packs)
        self._add_trials(configs)
        log.info("job %s: %d more configurations drawn", self._job_id, len(configs))
        return [self._fresh_pack(first + i, members) for i, members in enumerate(packs)]

    def _fresh_pack(self, index: int, members: list[str]) -> _Pack:
        state = PackState.new({m: self._configs[m] for m in members})
        steps = math.ceil(len(self._plan.data.y_train) / state.batch_size)
        return _Pack(index, {m: self._configs[m] for m in members}, state, steps=steps)

    def _member_bytes(self, config: dict[str, Any]) -> int:
        data = self._plan.data_for(config.get("scaler"))
        return member_bytes(
            len(data.feature_names),
            1 if data.task == "regression" else len(data.classes),
            int(config["hidden_units"]),
            int(config.get("hidden_layers", 1)),
            int(config["batch_size"]),
            embedding_layout(data.plan, config.get("embedding_dim")),
        )

    def _memory_budget(self) -> int:
        """The bytes one pack may take: TUNEFLEET_PACK_MEMORY_BYTES, else
        PACK_MEMORY_SHARE of the least memory a slot of an alive node has."""
        if self._memory_bytes > 0:
            return self._memory_bytes
        slots = self._slots_per_node()
        per_slot = [
            node["Resources"].get("memory", 0) / slots[node["NodeID"]]
            for node in ray.nodes()
            if node.get("Alive") and node["NodeID"] in slots
        ]
        return int(PACK_MEMORY_SHARE * min(per_slot)) if per_slot else 2**62

    def _pack_size(self, trials: int) -> int:
        """Large enough to amortise a step's dispatch over many members, small enough
        that every slot of the cluster gets a pack."""
        gpu = self._spec.resources.gpu > 0
        limit = self._spec.pack_size_limit() or (PACK_LIMIT_GPU if gpu else PACK_LIMIT_CPU)
        if self._spec.max_concurrent_trials is not None:
            limit = min(limit, self._spec.max_concurrent_trials)
        return max(1, min(limit, math.ceil(trials / self._slots(1))))

    def _slots(self, pack_size: int) -> int:
        """How many packs train at once: the sum of what each node holds of the spec's
        resources per trial (a pack takes one trial's), or what the autoscaler's node
        types hold at their maximums if that is more, within max_concurrent_trials."""
        fits = max(sum(self._slots_per_node().values()), self._autoscaler_slots)
        if self._spec.max_concurrent_trials is not None:
            fits = min(fits, self._spec.max_concurrent_trials // max(1, pack_size))
        return max(1, fits)

    def _slots_per_node(self) -> dict[str, int]:
        """Alive node id -> how many packs of the spec's resources it holds."""
        wanted = self._spec.resources
        slots = {}
        for node in ray.nodes():
            resources = node["Resources"] if node.get("Alive") else {}
            if wanted.gpu > 0:
                fits = int(resources.get("GPU", 0) // wanted.gpu)
            else:
                fits = int(resources.get("CPU", 0) // wanted.cpu)
            if fits > 0:
                slots[node["NodeID"]] = fits
        return slots

    def _resumable(
        self,
        index: int,
        packs: list[list[str]],
        absorbed: list[int],
        configs: dict[str, dict[str, Any]],
    ) -> _Pack | None:
        """Pack ``index`` as far as an earlier attempt took it, with the members of the
        packs it ``absorbed``: members that ended are not run again; the rest continue
        from the pack's saved state, or an absorbed pack's if the merge was not
        committed yet."""
        members = [m for i in (index, *absorbed) for m in packs[i]]
        left = [m for m in members if m not in self._progress.ended]
        if not left:
            return None
        path = self._committed_state(index)
        if path is not None:
            saved = _load_state(path)
            for other in absorbed:
                missing = set(packs[other]) - {m.trial_id for m in saved.members}
                other_path = self._committed_state(other)
                if missing and other_path is not None:
                    theirs = _load_state(other_path)
                    saved = saved.merged(
                        theirs.without({m.trial_id for m in theirs.members} - missing)
                    )
            state = saved.without({m.trial_id for m in saved.members} - set(left))
            left = [m.trial_id for m in state.members]
        else:
            return self._fresh_pack(index, left)
        steps = math.ceil(len(self._plan.data.y_train) / state.batch_size)
        return _Pack(index, {m: configs[m] for m in left}, state, epoch=state.epoch, steps=steps)

    def _absorbed(self, count: int) -> dict[int, list[int]]:
        """Index of each pack that trains (merged into none) -> the packs merged into it,
        directly or through others, in the order they merged."""
        into: dict[int, int] = {}
        for index in range(count):
            with contextlib.suppress(FileNotFoundError):
                into[index] = int(merged_file(self._dir, index).read_text())

        def root(index: int) -> int:
            while index in into:
                index = into[index]
            return index

        absorbed: dict[int, list[int]] = {i: [] for i in range(count) if i not in into}
        for index in sorted(into, key=lambda i: into[i]):
            absorbed[root(index)].append(index)
        return absorbed

    def _next(self, ready: list[_Pack], running: Iterable[_Pack]) -> _Pack:
        """Take the pack to train next out of ``ready``, with the packs of its kind after
        the same epoch merged into it while the pack-size and memory limits hold.

        Packs take turns an epoch at a time, fewest epochs first, then most steps: all
        of a job's packs move through the epochs together, which gives early stopping
        full rungs to judge by, and meets packs of one kind at the same epoch's end. As
        early stopping thins them out, their survivors merge and pay for one pack's
        steps. A pack whose kind has a pack one epoch behind it still training waits
        for it, while another pack can go instead."""
        order = sorted(ready, key=lambda p: (p.epoch, -p.steps, p.index))
        behind = {(p.key, p.epoch + 1) for p in running}
        pack = next((p for p in order if (p.key, p.epoch) not in behind), order[0])
        ready.remove(pack)
        mates = [p for p in order if p is not pack and (p.key, p.epoch) == (pack.key, pack.epoch)]
        for mate in mates:
            together = [*pack.configs.values(), *mate.configs.values()]
            if len(together) <= self._pack_limit(together, len(self._configs)):
                ready.remove(mate)
                self._merge(pack, mate)
        return pack

    def _pack_limit(self, configs: list[dict[str, Any]], trials: int) -> int:
        """The most members one pack of these configurations (of one pack key) may have:
        the pack size for a job of ``trials``, and as many as the memory budget holds of
        the widest one's bytes (the rest of what sizes a member is the pack key's)."""
        if self._limits is None:  # the cluster's, once a run
            self._limits = (self._pack_size(trials), self._memory_budget())
        size, budget = self._limits
        widest = max(configs, key=lambda c: int(c["hidden_units"]))
        return max(1, min(size, budget // self._member_bytes(widest)))

    def _merge(self, pack: _Pack, mate: _Pack) -> None:
        """Take ``mate`` into ``pack``: its next epoch trains their members together.
        Recorded first, for a resumed job."""
        merged_file(self._dir, mate.index).write_text(str(pack.index))
        pack.configs.update(mate.configs)
        pack.last.update(mate.last)
        pack.ended |= mate.ended
        pack.absorbed += [mate.state, *mate.absorbed]

    def _committed_state(self, index: int) -> StoragePath | None:
        """The state file of the pack's last committed epoch, if it has one."""
        try:
            epoch = int(committed_file(self._dir, index).read_text())
        except FileNotFoundError:
            # A job an earlier version started kept one file per pack, the driver's.
            old = self._dir / PACKS_FOLDER / f"{index:04d}.pt"
            return old if old.is_file() else None
        return state_file(self._dir, index, epoch)

    def _submit(self, pack: _Pack, plan_ref: Any) -> Any:
        for trial_id, config in pack.configs.items():
            if trial_id not in pack.last and trial_id not in self._time_total_s:
                self._progress.start(trial_id, config, {})
                self._time_total_s[trial_id] = 0.0
        resources = self._spec.resources
        task: Any = train_epoch.options(
            num_cpus=resources.cpu, num_gpus=resources.gpu, scheduling_strategy=self._where(pack)
        )
        refs: list[Any] = task.remote(
            pack.state, plan_ref, self._dir, pack.index, pack.ended, *pack.absorbed
        )
        pack.state, pack.ended, pack.absorbed = refs[0], set(), []
        return refs[1]

    def _where(self, pack: _Pack) -> Any:
        """Where a pack's next epoch runs. With one node, there. With several: the node
        its last epoch ran on (its state lies there, in the object store) while that
        node has room now, else a node that has; its first epoch, on the nodes in turn.
        Left to Ray's default, tiny epochs of several packs follow one node's reused
        worker while other nodes idle; a plain soft affinity to a full node (another
        job's trials hold its CPUs) waits for it rather than go elsewhere (Ray 2.60)."""
        if len(self._node_slots) <= 1:
            return "DEFAULT"
        if pack.node_id is None:
            return "SPREAD"
        return NodeAffinitySchedulingStrategy(pack.node_id, soft=True, _spill_on_unavailable=True)

    def _epoch_done(self, pack: _Pack, results_ref: Any) -> bool:
        """Record a pack's epoch, let the scheduler judge each member, and save the pack;
        True if it has members left to train."""
        try:
            results = ray.get(results_ref)
        except (ray.exceptions.RayError, OSError) as exc:
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1]}"
            log.warning("job %s: pack %d failed: %s", self._job_id, pack.index, reason)
            self.errors.append(reason)
            for trial_id, config in pack.configs.items():
                self._progress.end(trial_id, config, pack.last.get(trial_id, {}), reason)
            return False
        ended = set()
        first = next(iter(results.values()))
        # The epoch and the node are the pack's: every member's.
        epoch, pack.node_id = int(first["epoch"]), first["node_id"]
        for trial_id, config in pack.configs.items():
            result = self._result(trial_id, results[trial_id])
            pack.last[trial_id] = result
            self._progress.result(trial_id, config, result)
            trial = self._trials[trial_id]
            action = self._scheduler.on_trial_result(self._controller, trial, result)  # type: ignore[arg-type]
            if action == TrialScheduler.STOP or result["training_iteration"] >= config["epochs"]:
                self._scheduler.on_trial_complete(self._controller, trial, result)  # type: ignore[arg-type]
                self._progress.end(trial_id, config, result)
                ended.add(trial_id)
            self._write_result(trial_id, config, result, done=trial_id in ended)
        # Recorded: a resumed job goes on from this epoch's state, which its task saved.
        committed_file(self._dir, pack.index).write_text(str(epoch))
        pack.epoch = epoch
        pack.ended = ended
        pack.configs = {k: v for k, v in pack.configs.items() if k not in ended}
        return bool(pack.configs)

    def _result(self, trial_id: str, reported: dict[str, Any]) -> dict[str, Any]:
        seconds = float(reported.pop("epoch_s"))
        self._time_total_s[trial_id] = self._time_total_s.get(trial_id, 0.0) + seconds
        return {
            **reported,
            "training_iteration": int(reported.pop("epoch")),
            "time_total_s": self._time_total_s[trial_id],
        }

    def _write_result(
        self, trial_id: str, config: dict[str, Any], result: dict[str, Any], done: bool
    ) -> None:
        """The epoch in the trial's folder as Tune writes it (params.json, a result.json
        line per epoch), so that the job's folder can be read back without Redis.

        A local file grows by a line. An object cannot be appended to (an append reads
        and writes it whole: every epoch, every member's, quadratic in epochs), so in a
        bucket the lines wait here and the file is written once, when the trial ends
        or the run does."""
        folder = self._dir / trial_id
        first = result["training_iteration"] == 1
        if first:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "params.json").write_text(json.dumps(config))
        line = _result_line(trial_id, config, result, done)
        if folder.local is not None:
            path = folder / "result.json"
            if first:
                path.write_text(line + "\n")
            else:
                path.append_text(line + "\n")
            return
        if trial_id not in self._lines:  # resumed: first what earlier attempts recorded
            self._lines[trial_id] = [] if first else [
                _result_line(trial_id, config, epoch, done=False)
                for epoch in self._progress.history(trial_id)
                if epoch["training_iteration"] < result["training_iteration"]
            ]  # fmt: skip
        self._lines[trial_id].append(line)
        if done:
            self._flush_lines(trial_id)

    def _flush_lines(self, trial_id: str) -> None:
        lines = self._lines.pop(trial_id)
        (self._dir / trial_id / "result.json").write_text("".join(f"{x}\n" for x in lines))

    def _end_all(self, packs: list[_Pack]) -> None:
        """A stop rule or the time budget ended the job: every member that started ends
        where it is; those that never started stay out of the table, as Tune leaves
        them."""
        for pack in packs:
            for trial_id, config in pack.configs.items():
                if trial_id in self._time_total_s:
                    self._progress.end(trial_id, config, pack.last.get(trial_id, {}))

    # -- the scheduler across attempts -----------------------------------------------

    def _replay_history(self, configs: dict[str, dict[str, Any]]) -> None:
        """Tell the scheduler every trial, and what earlier attempts of the job reported,
        so that a resumed job's rungs hold the results they held before."""
        self._add_trials(configs)
        for row in self._progress.rows():
            if row.trial_id not in self._trials:
                continue
            for result in self._progress.history(row.trial_id):
                self._scheduler.on_trial_result(
                    self._controller,  # type: ignore[arg-type]
                    self._trials[row.trial_id],
                    result,
                )
            self._time_total_s[row.trial_id] = row.time_total_s or 0.0

    def _add_trials(self, configs: dict[str, dict[str, Any]]) -> None:
        for trial_id, config in configs.items():
            trial = Trial("tunefleet", config=config, trial_id=trial_id, stub=True)
            self._trials[trial_id] = trial
            self._scheduler.on_trial_add(self._controller, trial)  # type: ignore[arg-type]


def _result_line(trial_id: str, config: dict[str, Any], result: dict[str, Any], done: bool) -> str:
    """One line of a trial's result.json, as Tune writes it."""
    return json.dumps({**result, "trial_id": trial_id, "config": config, "done": done})


def _load_state(path: StoragePath) -> PackState:
    payload = torch.load(io.BytesIO(path.read_bytes()), weights_only=True)
    return state_from_payload(payload)
