"""Running a job's trials as packs: configurations that share batch size, epochs and
depth train together in one Ray task per epoch, each still a trial of its own.

The driver draws the configurations with Tune's variant generator, groups them into
packs, and hands each pack's epochs to Ray as tasks on warm workers. After every epoch
each member's result goes to Tune's own scheduler (ASHA, the median rule, FIFO) as a
trial's would; a member it stops leaves the pack at that epoch boundary, and the pack's
work shrinks with it. Every member's rows, history and best checkpoint are kept as an
unpacked trial's are. A pack's state is saved after every epoch, so that a job whose
driver died resumes each pack where it was, and runs no finished member again.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
import torch
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from services.driver import search
from services.driver.pack_task import checkpoint_folder, train_epoch
from services.driver.pack_training import (
    PackKey,
    PackState,
    pack_key,
    state_from_payload,
    state_to_payload,
)
from services.driver.progress import TrialProgress
from services.driver.training import TrialPlan
from shared.job_views import BestTrial
from shared.spec import JobSpec
from shared.storage import StoragePath

log = logging.getLogger(__name__)
STOP_CHECK_INTERVAL_S = 0.5
PACK_LIMIT_CPU = 64
PACK_LIMIT_GPU = 512
PLAN_FILE = "packs.json"


@dataclass
class _Pack:
    index: int
    configs: dict[str, dict[str, Any]]  # trial id -> config, of the members still in it
    state: PackState | Any  # a PackState, or Ray's reference to the one an epoch made
    last: dict[str, dict[str, Any]] = field(default_factory=dict)  # last result each
    node_id: str | None = None  # the node its epochs are asked to run on


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
    ) -> None:
        self._job_id = job_id
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
        self._placed: Counter[str] = Counter()

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
        resumed = [self._resumable(index, members, configs) for index, members in enumerate(packs)]
        waiting = deque(pack for pack in resumed if pack is not None and pack.configs)
        self._node_slots = self._slots_per_node()
        slots = self._slots(max((len(p.configs) for p in waiting), default=1))
        started = time.monotonic()
        running: dict[Any, _Pack] = {}
        try:
            while waiting or running:
                if self._should_stop():
                    return False
                out_of_time = (
                    self._spec.time_budget_s is not None
                    and time.monotonic() - started > self._spec.time_budget_s
                )
                if out_of_time:
                    self._end_all([*waiting, *running.values()])
                    return True
                while waiting and len(running) < slots:
                    pack = waiting.popleft()
                    running[self._submit(pack, plan_ref)] = pack
                ready, _ = ray.wait(list(running), num_returns=1, timeout=STOP_CHECK_INTERVAL_S)
                for ref in ready:
                    pack = running.pop(ref)
                    if self._epoch_done(pack, ref):
                        running[self._submit(pack, plan_ref)] = pack
                    else:
                        self._unplace(pack)
        finally:
            for ref in running:
                ray.cancel(ref)
            del plan_ref
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
            return saved["trials"], saved["packs"]
        drawn = search.configurations(self._spec, self._plan.seed)
        prefix = self._job_id[:8]
        configs = {f"{prefix}_{index:05d}": config for index, config in enumerate(drawn)}
        groups: dict[PackKey, list[str]] = {}
        for trial_id, config in configs.items():
            groups.setdefault(pack_key(config), []).append(trial_id)
        size = self._pack_size(len(configs))
        packs = []
        for members in groups.values():
            count = math.ceil(len(members) / size)
            even = math.ceil(len(members) / count)
            packs += [members[start : start + even] for start in range(0, len(members), even)]
        # Longest first (most steps per epoch), so that the last pack to finish is short.
        rows = len(self._plan.data.y_train)

        def steps(members: list[str]) -> float:
            batch_size, epochs, *_ = pack_key(configs[members[0]])
            return -epochs * math.ceil(rows / batch_size)

        packs.sort(key=steps)
        self._dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"trials": configs, "packs": packs}))
        return configs, packs

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
        self, index: int, members: list[str], configs: dict[str, dict[str, Any]]
    ) -> _Pack | None:
        """Pack ``index`` as far as an earlier attempt took it: members that ended are
        not run again; the rest continue from the pack's saved state."""
        left = [m for m in members if m not in self._progress.ended]
        if not left:
            return None
        path = self._state_path(index)
        if path.is_file():
            payload = torch.load(io.BytesIO(path.read_bytes()), weights_only=True)
            saved = state_from_payload(payload)
            state = saved.without({m.trial_id for m in saved.members} - set(left))
            left = [m.trial_id for m in state.members]
        else:
            state = PackState.new({m: configs[m] for m in left})
        return _Pack(index, {m: configs[m] for m in left}, state)

    def _state_path(self, index: int) -> StoragePath:
        return self._dir / "packs" / f"{index:04d}.pt"

    def _submit(self, pack: _Pack, plan_ref: Any) -> Any:
        for trial_id, config in pack.configs.items():
            if trial_id not in pack.last and trial_id not in self._time_total_s:
                self._progress.start(trial_id, config, {})
                self._time_total_s[trial_id] = 0.0
        resources = self._spec.resources
        if pack.node_id is None:
            pack.node_id = self._place()
        # Every epoch of a pack asks for the same node (soft: elsewhere if that node is
        # gone or full), next to the pack's state in that node's object store.
        strategy: Any = "DEFAULT"
        if pack.node_id is not None:
            strategy = NodeAffinitySchedulingStrategy(pack.node_id, soft=True)
        task: Any = train_epoch.options(
            num_cpus=resources.cpu, num_gpus=resources.gpu, scheduling_strategy=strategy
        )
        refs: list[Any] = task.remote(pack.state, plan_ref, self._dir)
        pack.state = refs[0]
        return refs[1]

    def _place(self) -> str | None:
        """The node for a new pack: the one with the most slots that no pack holds.
        Left to Ray, tiny epochs of several packs follow one node's reused worker."""
        if not self._node_slots:
            return None
        node = max(self._node_slots, key=lambda n: self._node_slots[n] - self._placed[n])
        self._placed[node] += 1
        return node

    def _unplace(self, pack: _Pack) -> None:
        if pack.node_id is not None:
            self._placed[pack.node_id] -= 1

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
        state_ref: Any = pack.state
        state: PackState = ray.get(state_ref).without(ended)
        pack.state = state
        pack.configs = {k: v for k, v in pack.configs.items() if k not in ended}
        self._save(pack.index, state)
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
        line per epoch), so that the job's folder can be read back without Redis."""
        folder = self._dir / trial_id
        folder.mkdir(parents=True, exist_ok=True)
        if result["training_iteration"] == 1:
            (folder / "params.json").write_text(json.dumps(config))
            (folder / "result.json").write_text("")
        line = {**result, "trial_id": trial_id, "config": config, "done": done}
        (folder / "result.json").append_text(json.dumps(line) + "\n")

    def _save(self, index: int, state: PackState) -> None:
        path = self._state_path(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(state_to_payload(state), buffer)
        path.write_bytes(buffer.getvalue())

    def _end_all(self, packs: list[_Pack]) -> None:
        """The time budget ran out: every member that started ends where it is; those
        that never started stay out of the table, as Tune leaves them."""
        for pack in packs:
            for trial_id, config in pack.configs.items():
                if trial_id in self._time_total_s:
                    self._progress.end(trial_id, config, pack.last.get(trial_id, {}))

    # -- the scheduler across attempts -----------------------------------------------

    def _replay_history(self, configs: dict[str, dict[str, Any]]) -> None:
        """Tell the scheduler every trial, and what earlier attempts of the job reported,
        so that a resumed job's rungs hold the results they held before."""
        for trial_id, config in configs.items():
            trial = Trial("tunefleet", config=config, trial_id=trial_id, stub=True)
            self._trials[trial_id] = trial
            self._scheduler.on_trial_add(self._controller, trial)  # type: ignore[arg-type]
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
