"""Every Redis key of one queue, built here and nowhere else.

The queue name sits in a hash tag (`jq:{default}:pending`) so all keys of a queue live in one
cluster slot: every multi-key Lua script then works on ElastiCache cluster mode as well.
Scripts that touch keys named by job id (job hashes, per-type indexes) receive the key *prefix*
as a KEYS entry and append the id, the way BullMQ does; the prefix carries the same hash tag.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.crc import key_slot


@dataclass(frozen=True)
class QueueKeys:
    """Names of the Redis keys of queue `queue` under `prefix`."""

    prefix: str
    queue: str

    @property
    def cluster_slot(self) -> int:
        """The one cluster hash slot that every key of this queue maps to."""
        return key_slot(self._key().encode())

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, "{" + self.queue + "}", *parts))

    # Sorted sets of job ids, one per state (see states.py for what each score means).
    @property
    def pending(self) -> str:
        """Jobs ready to run; score orders by priority, then FIFO sequence."""
        return self._key("pending")

    @property
    def delayed(self) -> str:
        """Jobs waiting for a due time (first run or a retry's backoff); score = due ms."""
        return self._key("delayed")

    @property
    def active(self) -> str:
        """Jobs held by a worker; score = lease deadline ms."""
        return self._key("active")

    @property
    def completed(self) -> str:
        """Finished jobs; score = finish ms."""
        return self._key("completed")

    @property
    def failed(self) -> str:
        """Jobs that used all attempts or failed permanently; score = finish ms."""
        return self._key("failed")

    @property
    def cancelled(self) -> str:
        """Cancelled jobs; score = cancel ms."""
        return self._key("cancelled")

    @property
    def expiry(self) -> str:
        """Finished jobs with an age limit; score = ms after which the sweeper deletes them."""
        return self._key("expiry")

    def state_set(self, state: str) -> str:
        """The sorted set holding jobs in `state` (a JobState value; waiting-children is
        `waiting_children`)."""
        return self._key("active" if state == "processing" else state)

    @property
    def marker(self) -> str:
        """Wake-up marker for idle workers (BZPOPMIN); score = when there is work (ms, 0 = now)."""
        return self._key("marker")

    @property
    def sequence(self) -> str:
        """Counter giving pending jobs their FIFO order within a priority."""
        return self._key("seq")

    @property
    def type_counts(self) -> str:
        """Hash `<type>|<state>` -> count, so depth per type is one HGETALL."""
        return self._key("typecounts")

    @property
    def type_limits(self) -> str:
        """Hash `<type>` -> max jobs of that type processing at once across all workers."""
        return self._key("typelimits")

    # Flow control (see docs/queue.md "Flow control"): a lane is a share of the pending work
    # (a job type today) that has its own pending set while it is paused or limited.
    @property
    def flow(self) -> str:
        """Hash of flow settings: `queue_paused`, `paused|<lane>`, `rate|<lane>` = "limit,ms",
        `concurrency|<lane>` = N or "none" (set through the API; overrides type_limits)."""
        return self._key("flow")

    @property
    def lanes(self) -> str:
        """Set of lanes whose pending jobs live in their own set instead of `pending`."""
        return self._key("lanes")

    @property
    def lane_prefix(self) -> str:
        """Prefix of lane pending sets; `lane_prefix + lane` is scored like `pending`."""
        return self._key("lane", "")

    def lane(self, lane: str) -> str:
        """The pending set of one lane."""
        return self.lane_prefix + lane

    @property
    def lane_starts_prefix(self) -> str:
        """Prefix of rate logs; `lane_starts_prefix + lane` holds recent starts, score = ms."""
        return self._key("starts", "")

    # Fair-share groups (docs/queue.md "Groups"): each group's pending jobs in its own set;
    # dequeue serves the group whose turn in `groups_ready` comes first.
    @property
    def group_prefix(self) -> str:
        """Prefix of group pending sets; `group_prefix + group` is scored like `pending`."""
        return self._key("group", "")

    def group(self, group: str) -> str:
        """The pending set of one group."""
        return self.group_prefix + group

    @property
    def groups(self) -> str:
        """Sorted set of every group with pending or running jobs or settings; score = its
        pending count (so groups with backlog and the largest one are O(log n) reads)."""
        return self._key("groups")

    @property
    def groups_ready(self) -> str:
        """Groups that may start a job now; score = their turn (priority, then sequence)."""
        return self._key("groups", "ready")

    @property
    def groups_held(self) -> str:
        """Groups held by their rate; score = ms when they may start again."""
        return self._key("groups", "held")

    @property
    def group_state(self) -> str:
        """Hash of group settings and counts: `paused|<g>`, `rate|<g>` = "limit,ms",
        `concurrency|<g>` = N, `running|<g>` = jobs processing now."""
        return self._key("groups", "state")

    @property
    def groups_paused(self) -> str:
        """Set of paused groups (their pending jobs are left out of the scaling backlog)."""
        return self._key("groups", "paused")

    @property
    def groups_pending(self) -> str:
        """Every grouped pending job, scored like `pending`: one set for listings and counts."""
        return self._key("groups", "pending")

    @property
    def group_starts_prefix(self) -> str:
        """Prefix of group rate logs; `group_starts_prefix + group` holds recent starts."""
        return self._key("group-starts", "")

    # Schedules (docs/queue.md "Schedules").
    @property
    def schedules(self) -> str:
        """Sorted set of every schedule id; score = next tick ms, +inf when paused or ended."""
        return self._key("schedules")

    @property
    def schedule_prefix(self) -> str:
        """Prefix of schedule hashes; `schedule_prefix + id` holds spec, job, runs, paused."""
        return self._key("schedule", "")

    def schedule(self, schedule_id: str) -> str:
        """The hash of one schedule."""
        return self.schedule_prefix + schedule_id

    @property
    def schedule_runs_prefix(self) -> str:
        """Prefix of run lists; `schedule_runs_prefix + id` holds its newest run job ids."""
        return self._key("schedule-runs", "")

    def schedule_runs(self, schedule_id: str) -> str:
        """The capped list of one schedule's newest run job ids, newest first."""
        return self.schedule_runs_prefix + schedule_id

    # Flows (docs/queue.md "Flows"): a parent waits for its children in its own state.
    @property
    def waiting_children(self) -> str:
        """Flow parents waiting for their children (state waiting-children); score = since ms."""
        return self._key("waiting-children")

    @property
    def children_prefix(self) -> str:
        """Prefix of children lists; `children_prefix + parent id` lists its children's ids."""
        return self._key("children", "")

    def children(self, parent_id: str) -> str:
        """The ids of one flow parent's children, in the order they were posted."""
        return self.children_prefix + parent_id

    @property
    def child_results_prefix(self) -> str:
        """Prefix of child result hashes: child id -> result JSON, per parent."""
        return self._key("child-results", "")

    def child_results(self, parent_id: str) -> str:
        """The results of one flow parent's completed children (child id -> result JSON)."""
        return self.child_results_prefix + parent_id

    @property
    def child_failures_prefix(self) -> str:
        """Prefix of child failure hashes: child id -> error, per parent."""
        return self._key("child-failures", "")

    def child_failures(self, parent_id: str) -> str:
        """Why each failed or cancelled child of one flow parent ended (child id -> error)."""
        return self.child_failures_prefix + parent_id

    @property
    def job_prefix(self) -> str:
        """Prefix of job hashes; `job_prefix + id` is the job."""
        return self._key("job", "")

    def job(self, job_id: str) -> str:
        """The hash of one job."""
        return self.job_prefix + job_id

    @property
    def logs_prefix(self) -> str:
        """Prefix of per-job log lists (created only when a job logs)."""
        return self._key("logs", "")

    def logs(self, job_id: str) -> str:
        """The capped list of log lines of one job."""
        return self.logs_prefix + job_id

    @property
    def type_index_prefix(self) -> str:
        """Prefix of per-type indexes; `type_index_prefix + type` is a sorted set by creation."""
        return self._key("type", "")

    def type_index(self, job_type: str) -> str:
        """All retained jobs of one type, scored by creation ms."""
        return self.type_index_prefix + job_type

    @property
    def idempotency_prefix(self) -> str:
        """Prefix of idempotency keys; each holds the id of the job first enqueued with it."""
        return self._key("idem", "")

    @property
    def dedupe_prefix(self) -> str:
        """Prefix of dedupe keys; each holds the id of the job its key leads to, with the
        dedupe window as its Redis TTL (docs/queue.md "Deduplication")."""
        return self._key("dedupe", "")

    @property
    def samples(self) -> str:
        """Capped list of recent `wait_ms run_ms` pairs of completed jobs, for percentiles."""
        return self._key("samples")

    def stats_minute(self, minute: int) -> str:
        """Hash of counters (completed, failed, retried) for one epoch minute."""
        return self._key("stats", str(minute))

    @property
    def history_folded(self) -> str:
        """The newest epoch minute already folded into the history rollup."""
        return self._key("history", "folded")

    def history_minute(self, minute: int) -> str:
        """Hash of one closed minute's counters and wait-time percentiles (history rollup)."""
        return self._key("history", "m", str(minute))

    def history_hour(self, hour: int) -> str:
        """Hash of one epoch hour's summed counters and completed-weighted percentile sums."""
        return self._key("history", "h", str(hour))

    @property
    def sweep_lock(self) -> str:
        """Lock so one worker at a time runs the sweeper."""
        return self._key("lock", "sweep")

    @property
    def workers(self) -> str:
        """Sorted set of worker ids; score = last heartbeat ms."""
        return self._key("workers")

    def worker(self, worker_id: str) -> str:
        """Hash describing one live worker; expires when its heartbeat stops."""
        return self._key("worker", worker_id)

    def worker_wake(self, worker_id: str) -> str:
        """One worker's own wake-up key, blocked on beside the marker, so the worker can end
        its own blocking wait at shutdown without waking anyone else."""
        return self._key("wake", worker_id)

    def job_events(self, job_id: str) -> str:
        """Pub/sub channel carrying a job's state and progress changes (for SSE)."""
        return self._key("events", job_id)

    @property
    def events_prefix(self) -> str:
        """Prefix of every job's event stream (`job_events(id)`), for scripts to append ids."""
        return self.job_events("")

    @property
    def events(self) -> str:
        """Pub/sub channel carrying every job's state changes (for dashboards)."""
        return self._key("events")

    @property
    def cancel_channel(self) -> str:
        """Pub/sub channel telling workers to stop a processing job now."""
        return self._key("cancel")
