-- SQL of the SQLite job store, in named sections read by jobkit/storage/sqlite.py.
--
-- A section runs from its "-- name: <name>" line to the next one. Parameters are always bound
-- (:name). Times are REAL unix epoch seconds in UTC, taken from the store's clock, never from
-- SQLite's. "migration_<n>" sections build the schema: each is applied once, in order, inside one
-- BEGIN IMMEDIATE transaction, and the schema version becomes the highest n. To change the
-- schema, append a new migration section; never edit one that has shipped.

-- name: migration_1
CREATE TABLE IF NOT EXISTS jobkit_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    method TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL CHECK (
        status IN ('pending', 'running', 'retrying', 'completed', 'failed', 'cancelled')
    ),
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    policy TEXT NOT NULL,
    result TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    available_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    worker_id TEXT,
    lease_expires_at REAL,
    progress REAL,
    progress_message TEXT
);

CREATE TABLE IF NOT EXISTS jobkit_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobkit_jobs (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    worker_id TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    outcome TEXT,
    error TEXT,
    traceback TEXT
);

-- claim: the next due job, in claim order, without a sort
CREATE INDEX IF NOT EXISTS jobkit_jobs_claim
    ON jobkit_jobs (priority DESC, available_at, id)
    WHERE status IN ('pending', 'retrying');

-- requeue_expired: only running jobs have a lease
CREATE INDEX IF NOT EXISTS jobkit_jobs_lease
    ON jobkit_jobs (lease_expires_at)
    WHERE status = 'running';

CREATE INDEX IF NOT EXISTS jobkit_jobs_status ON jobkit_jobs (status, id);

CREATE INDEX IF NOT EXISTS jobkit_jobs_name ON jobkit_jobs (name, id);

CREATE INDEX IF NOT EXISTS jobkit_attempts_job ON jobkit_attempts (job_id, id);

-- name: migration_2
-- crash accounting: attempts lost with their worker, counted apart from retries
ALTER TABLE jobkit_jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobkit_jobs ADD COLUMN max_crashes INTEGER NOT NULL DEFAULT 3;

-- name: migration_3
-- the worker processes alive, for the dashboard: their supervisors register and beat them
CREATE TABLE IF NOT EXISTS jobkit_workers (
    worker_id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    supervisor_pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    last_seen_at REAL NOT NULL
);

-- attempts ended per minute, for the dashboard's chart (added to by the supervisors)
CREATE TABLE IF NOT EXISTS jobkit_throughput (
    minute REAL PRIMARY KEY,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0
);


-- name: migration_4
-- the lines jobs log through self.log, per attempt (capped by the worker), for the dashboard
CREATE TABLE IF NOT EXISTS jobkit_job_logs (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobkit_jobs (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    at REAL NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS jobkit_job_logs_job ON jobkit_job_logs (job_id, id);

-- name: migration_5
-- the params with their secrets masked, for a text search that cannot guess a secret (null
-- where nothing is secret: then the params themselves are searched)
ALTER TABLE jobkit_jobs ADD COLUMN params_masked TEXT;

-- name: migration_6
-- dashboard sessions that were signed out, until their cookies expire anyway: every dashboard
-- process over this store refuses them (docs/decisions.md, "Dashboard sessions")
CREATE TABLE IF NOT EXISTS jobkit_revoked_sessions (
    id TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);

-- name: migration_7
-- the store is a trust boundary: jobkit_jobs again, with a CHECK on each column's type and
-- range (SQLite adds a CHECK only with a new table): a time is REAL seconds since 1970 that
-- Python can read (years 1 to 9999), a count an INTEGER. Before this runs, sqlite.py sets
-- aside the rows these CHECKs would refuse (unreadable_rows, set_aside_unreadable) and turns
-- foreign keys off (dropping the old table would delete the attempts and the log lines); it
-- checks them before the commit. The ids go on from where they were (sqlite_sequence).
CREATE TABLE jobkit_jobs_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL CHECK (typeof(name) = 'text'),
    method TEXT NOT NULL CHECK (typeof(method) = 'text'),
    params TEXT NOT NULL,
    status TEXT NOT NULL CHECK (
        status IN ('pending', 'running', 'retrying', 'completed', 'failed', 'cancelled')
    ),
    priority INTEGER NOT NULL DEFAULT 0 CHECK (typeof(priority) = 'integer'),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (typeof(attempts) = 'integer'),
    max_attempts INTEGER NOT NULL CHECK (typeof(max_attempts) = 'integer'),
    policy TEXT NOT NULL,
    result TEXT,
    error TEXT CHECK (typeof(error) IN ('text', 'null')),
    created_at REAL NOT NULL CHECK (
        typeof(created_at) = 'real' AND created_at >= -62135596800.0 AND created_at < 253402300800.0
    ),
    available_at REAL NOT NULL CHECK (
        typeof(available_at) = 'real'
        AND available_at >= -62135596800.0 AND available_at < 253402300800.0
    ),
    started_at REAL CHECK (started_at IS NULL OR (
        typeof(started_at) = 'real' AND started_at >= -62135596800.0 AND started_at < 253402300800.0
    )),
    finished_at REAL CHECK (finished_at IS NULL OR (
        typeof(finished_at) = 'real'
        AND finished_at >= -62135596800.0 AND finished_at < 253402300800.0
    )),
    worker_id TEXT CHECK (typeof(worker_id) IN ('text', 'null')),
    lease_expires_at REAL CHECK (lease_expires_at IS NULL OR (
        typeof(lease_expires_at) = 'real'
        AND lease_expires_at >= -62135596800.0 AND lease_expires_at < 253402300800.0
    )),
    progress REAL CHECK (
        progress IS NULL OR (typeof(progress) = 'real' AND progress BETWEEN 0 AND 1)
    ),
    progress_message TEXT CHECK (typeof(progress_message) IN ('text', 'null')),
    crashes INTEGER NOT NULL DEFAULT 0 CHECK (typeof(crashes) = 'integer'),
    max_crashes INTEGER NOT NULL DEFAULT 3 CHECK (typeof(max_crashes) = 'integer'),
    params_masked TEXT CHECK (typeof(params_masked) IN ('text', 'null'))
);

INSERT INTO jobkit_jobs_new (
    id, name, method, params, status, priority, attempts, max_attempts, policy, result, error,
    created_at, available_at, started_at, finished_at, worker_id, lease_expires_at, progress,
    progress_message, crashes, max_crashes, params_masked
)
SELECT
    id, name, method, params, status, priority, attempts, max_attempts, policy, result, error,
    created_at, available_at, started_at, finished_at, worker_id, lease_expires_at, progress,
    progress_message, crashes, max_crashes, params_masked
FROM jobkit_jobs;

DELETE FROM sqlite_sequence WHERE name = 'jobkit_jobs_new';

INSERT INTO sqlite_sequence (name, seq)
SELECT 'jobkit_jobs_new', seq FROM sqlite_sequence WHERE name = 'jobkit_jobs';

DROP TABLE jobkit_jobs;

ALTER TABLE jobkit_jobs_new RENAME TO jobkit_jobs;

CREATE INDEX jobkit_jobs_claim
    ON jobkit_jobs (priority DESC, available_at, id)
    WHERE status IN ('pending', 'retrying');

CREATE INDEX jobkit_jobs_lease
    ON jobkit_jobs (lease_expires_at)
    WHERE status = 'running';

CREATE INDEX jobkit_jobs_status ON jobkit_jobs (status, id);

CREATE INDEX jobkit_jobs_name ON jobkit_jobs (name, id);

-- name: migration_8
-- named queues: each job waits in one, and a queue paused here is claimed from by no worker
-- (docs/queues.md); jobkit_queues keeps the queues that were ever paused or resumed
ALTER TABLE jobkit_jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default'
    CHECK (typeof(queue) = 'text');

CREATE TABLE IF NOT EXISTS jobkit_queues (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    changed_at REAL NOT NULL
);

-- a worker given some queues finds their due jobs without reading the others'
CREATE INDEX IF NOT EXISTS jobkit_jobs_queue_claim
    ON jobkit_jobs (queue, priority DESC, available_at, id)
    WHERE status IN ('pending', 'retrying');

-- `jobkit queues`: attempts ended in the last minute, per queue
CREATE INDEX IF NOT EXISTS jobkit_attempts_finished
    ON jobkit_attempts (finished_at)
    WHERE finished_at IS NOT NULL;

-- the starts of rate-limited jobs in their last window, by limit group ("job:Name",
-- "job:Name:key=<JSON value>", "queue:name"; jobkit/storage/flow_claim.py)
CREATE TABLE IF NOT EXISTS jobkit_flow_starts (
    limit_key TEXT NOT NULL,
    started_at REAL NOT NULL
);

CREATE INDEX IF NOT EXISTS jobkit_flow_starts_key ON jobkit_flow_starts (limit_key, started_at);

-- unique jobs: at most one job of a key pending, retrying or running (the index enforces it);
-- one enqueued within the key's period is found through the second
ALTER TABLE jobkit_jobs ADD COLUMN unique_key TEXT
    CHECK (unique_key IS NULL OR typeof(unique_key) = 'text');

CREATE UNIQUE INDEX IF NOT EXISTS jobkit_jobs_unique_active ON jobkit_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'retrying', 'running');

CREATE INDEX IF NOT EXISTS jobkit_jobs_unique ON jobkit_jobs (unique_key, created_at)
    WHERE unique_key IS NOT NULL;

-- name: migration_9
-- schedules (schedules: in jobs.yaml, docs/scheduling.md): a state per schedule name (paused,
-- when a worker first saw it, the newest tick handled and the newest tick that ran) and a run per
-- tick fired, keyed (schedule, tick) so that a tick is stored once however many workers race;
-- a run goes with its job (prune, retention), the state keeps the ticks. Ticks are REAL unix
-- epoch seconds in UTC, like every time here.
CREATE TABLE IF NOT EXISTS jobkit_schedules (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    since REAL NOT NULL CHECK (typeof(since) = 'real'),
    last_tick REAL CHECK (last_tick IS NULL OR typeof(last_tick) = 'real'),
    last_run_at REAL CHECK (last_run_at IS NULL OR typeof(last_run_at) = 'real')
);

CREATE TABLE IF NOT EXISTS jobkit_schedule_runs (
    schedule TEXT NOT NULL,
    tick REAL NOT NULL,
    job_id INTEGER NOT NULL REFERENCES jobkit_jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (schedule, tick)
);

-- a job deleted finds its run without reading the others
CREATE INDEX IF NOT EXISTS jobkit_schedule_runs_job ON jobkit_schedule_runs (job_id);

-- name: migration_10
-- workflows (docs/decisions.md, "Workflows (issue 20)"): a job that waits for others is
-- 'blocked' (jobkit_jobs again, as migration_7 made it, with that status in the CHECK; foreign
-- keys are off meanwhile, see migration_7), its place in the graph is a link (its workflow,
-- what it needs of its parents, the parameter their results go to) and its parents are rows of
-- jobkit_job_parents, found from the parent that ends (no foreign key on parent_id: a parent
-- deleted by prune counts as ended, its result None)
CREATE TABLE jobkit_jobs_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL CHECK (typeof(name) = 'text'),
    method TEXT NOT NULL CHECK (typeof(method) = 'text'),
    params TEXT NOT NULL,
    status TEXT NOT NULL CHECK (
        status IN (
            'pending', 'running', 'retrying', 'completed', 'failed', 'cancelled', 'blocked'
        )
    ),
    priority INTEGER NOT NULL DEFAULT 0 CHECK (typeof(priority) = 'integer'),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (typeof(attempts) = 'integer'),
    max_attempts INTEGER NOT NULL CHECK (typeof(max_attempts) = 'integer'),
    policy TEXT NOT NULL,
    result TEXT,
    error TEXT CHECK (typeof(error) IN ('text', 'null')),
    created_at REAL NOT NULL CHECK (
        typeof(created_at) = 'real' AND created_at >= -62135596800.0 AND created_at < 253402300800.0
    ),
    available_at REAL NOT NULL CHECK (
        typeof(available_at) = 'real'
        AND available_at >= -62135596800.0 AND available_at < 253402300800.0
    ),
    started_at REAL CHECK (started_at IS NULL OR (
        typeof(started_at) = 'real' AND started_at >= -62135596800.0 AND started_at < 253402300800.0
    )),
    finished_at REAL CHECK (finished_at IS NULL OR (
        typeof(finished_at) = 'real'
        AND finished_at >= -62135596800.0 AND finished_at < 253402300800.0
    )),
    worker_id TEXT CHECK (typeof(worker_id) IN ('text', 'null')),
    lease_expires_at REAL CHECK (lease_expires_at IS NULL OR (
        typeof(lease_expires_at) = 'real'
        AND lease_expires_at >= -62135596800.0 AND lease_expires_at < 253402300800.0
    )),
    progress REAL CHECK (
        progress IS NULL OR (typeof(progress) = 'real' AND progress BETWEEN 0 AND 1)
    ),
    progress_message TEXT CHECK (typeof(progress_message) IN ('text', 'null')),
    crashes INTEGER NOT NULL DEFAULT 0 CHECK (typeof(crashes) = 'integer'),
    max_crashes INTEGER NOT NULL DEFAULT 3 CHECK (typeof(max_crashes) = 'integer'),
    params_masked TEXT CHECK (typeof(params_masked) IN ('text', 'null')),
    queue TEXT NOT NULL DEFAULT 'default' CHECK (typeof(queue) = 'text'),
    unique_key TEXT CHECK (unique_key IS NULL OR typeof(unique_key) = 'text'),
    -- 1 once a job waits for this one (set where the link is stored): a completion that finds
    -- the claimed row unchanged, 0 here, has no children to look up (issue 20's cost, PROFILE.md)
    has_children INTEGER NOT NULL DEFAULT 0 CHECK (has_children IN (0, 1))
);

INSERT INTO jobkit_jobs_new (
    id, name, method, params, status, priority, attempts, max_attempts, policy, result, error,
    created_at, available_at, started_at, finished_at, worker_id, lease_expires_at, progress,
    progress_message, crashes, max_crashes, params_masked, queue, unique_key
)
SELECT
    id, name, method, params, status, priority, attempts, max_attempts, policy, result, error,
    created_at, available_at, started_at, finished_at, worker_id, lease_expires_at, progress,
    progress_message, crashes, max_crashes, params_masked, queue, unique_key
FROM jobkit_jobs;

DELETE FROM sqlite_sequence WHERE name = 'jobkit_jobs_new';

INSERT INTO sqlite_sequence (name, seq)
SELECT 'jobkit_jobs_new', seq FROM sqlite_sequence WHERE name = 'jobkit_jobs';

DROP TABLE jobkit_jobs;

ALTER TABLE jobkit_jobs_new RENAME TO jobkit_jobs;

CREATE INDEX jobkit_jobs_claim
    ON jobkit_jobs (priority DESC, available_at, id)
    WHERE status IN ('pending', 'retrying');

CREATE INDEX jobkit_jobs_lease
    ON jobkit_jobs (lease_expires_at)
    WHERE status = 'running';

CREATE INDEX jobkit_jobs_status ON jobkit_jobs (status, id);

CREATE INDEX jobkit_jobs_name ON jobkit_jobs (name, id);

CREATE INDEX jobkit_jobs_queue_claim
    ON jobkit_jobs (queue, priority DESC, available_at, id)
    WHERE status IN ('pending', 'retrying');

CREATE UNIQUE INDEX jobkit_jobs_unique_active ON jobkit_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'retrying', 'running');

CREATE INDEX jobkit_jobs_unique ON jobkit_jobs (unique_key, created_at)
    WHERE unique_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS jobkit_workflows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL CHECK (typeof(created_at) = 'real')
);

CREATE TABLE IF NOT EXISTS jobkit_job_links (
    job_id INTEGER PRIMARY KEY REFERENCES jobkit_jobs (id) ON DELETE CASCADE,
    workflow_id INTEGER REFERENCES jobkit_workflows (id) ON DELETE CASCADE,
    needs TEXT NOT NULL CHECK (needs IN ('completed', 'ended')),
    result_as TEXT CHECK (result_as IS NULL OR typeof(result_as) = 'text'),
    collect INTEGER NOT NULL CHECK (collect IN (0, 1)),
    label TEXT NOT NULL CHECK (typeof(label) = 'text'),
    -- cancelled because a parent did not complete: a retry of that parent revives it
    cascaded INTEGER NOT NULL DEFAULT 0 CHECK (cascaded IN (0, 1))
);

CREATE INDEX IF NOT EXISTS jobkit_job_links_workflow ON jobkit_job_links (workflow_id, job_id)
    WHERE workflow_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS jobkit_job_parents (
    child_id INTEGER NOT NULL REFERENCES jobkit_job_links (job_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    parent_id INTEGER NOT NULL,
    PRIMARY KEY (child_id, position)
);

-- a job that ends finds its children without reading the others
CREATE INDEX IF NOT EXISTS jobkit_job_parents_parent ON jobkit_job_parents (parent_id);

-- a parent's row says it has children (see jobkit_jobs.has_children), in the link's transaction
CREATE TRIGGER IF NOT EXISTS jobkit_job_parents_mark AFTER INSERT ON jobkit_job_parents
BEGIN
    UPDATE jobkit_jobs SET has_children = 1 WHERE id = NEW.parent_id AND has_children = 0;
END;

-- name: migration_11
-- the most bytes of JSON a step's params may take once its parents' results are written in
-- (its job's max_params_bytes when stored; null: not checked, as for a link stored before):
-- over it, the release fails the step instead (docs/decisions.md, "Workflows (issue 20)")
ALTER TABLE jobkit_job_links ADD COLUMN max_params_bytes INTEGER
    CHECK (max_params_bytes IS NULL OR typeof(max_params_bytes) = 'integer');

-- name: unreadable_rows
-- the rows migration_7's CHECKs refuse (run before it, on the old table)
SELECT * FROM jobkit_jobs
WHERE typeof(name) <> 'text' OR typeof(method) <> 'text'
    OR typeof(priority) <> 'integer' OR typeof(attempts) <> 'integer'
    OR typeof(max_attempts) <> 'integer' OR typeof(crashes) <> 'integer'
    OR typeof(max_crashes) <> 'integer'
    OR typeof(error) NOT IN ('text', 'null') OR typeof(worker_id) NOT IN ('text', 'null')
    OR typeof(progress_message) NOT IN ('text', 'null')
    OR typeof(params_masked) NOT IN ('text', 'null')
    OR NOT (typeof(created_at) = 'real'
        AND created_at >= -62135596800.0 AND created_at < 253402300800.0)
    OR NOT (typeof(available_at) = 'real'
        AND available_at >= -62135596800.0 AND available_at < 253402300800.0)
    OR NOT (started_at IS NULL OR (typeof(started_at) = 'real'
        AND started_at >= -62135596800.0 AND started_at < 253402300800.0))
    OR NOT (finished_at IS NULL OR (typeof(finished_at) = 'real'
        AND finished_at >= -62135596800.0 AND finished_at < 253402300800.0))
    OR NOT (lease_expires_at IS NULL OR (typeof(lease_expires_at) = 'real'
        AND lease_expires_at >= -62135596800.0 AND lease_expires_at < 253402300800.0))
    OR NOT (progress IS NULL OR (typeof(progress) = 'real' AND progress BETWEEN 0 AND 1));

-- name: set_aside_unreadable
-- one of unreadable_rows set aside: failed, :error quoting what each bad column held, which
-- gets a stand-in (text as text, a count 0, a time the migration's, an optional value null)
UPDATE jobkit_jobs
SET status = 'failed',
    error = :error,
    name = CAST(name AS TEXT),
    method = CAST(method AS TEXT),
    priority = CASE WHEN typeof(priority) = 'integer' THEN priority ELSE 0 END,
    attempts = CASE WHEN typeof(attempts) = 'integer' THEN attempts ELSE 0 END,
    max_attempts = CASE WHEN typeof(max_attempts) = 'integer' THEN max_attempts ELSE 0 END,
    crashes = CASE WHEN typeof(crashes) = 'integer' THEN crashes ELSE 0 END,
    max_crashes = CASE WHEN typeof(max_crashes) = 'integer' THEN max_crashes ELSE 3 END,
    progress_message = CAST(progress_message AS TEXT),
    params_masked = CASE WHEN typeof(params_masked) = 'text' THEN params_masked END,
    created_at = CASE WHEN typeof(created_at) = 'real'
        AND created_at >= -62135596800.0 AND created_at < 253402300800.0
        THEN created_at ELSE :now END,
    available_at = CASE WHEN typeof(available_at) = 'real'
        AND available_at >= -62135596800.0 AND available_at < 253402300800.0
        THEN available_at ELSE :now END,
    started_at = CASE WHEN typeof(started_at) = 'real'
        AND started_at >= -62135596800.0 AND started_at < 253402300800.0 THEN started_at END,
    finished_at = :now,
    progress = CASE WHEN typeof(progress) = 'real' AND progress BETWEEN 0 AND 1
        THEN progress END,
    worker_id = NULL,
    lease_expires_at = NULL
WHERE id = :job_id;

-- name: create_schema_version
CREATE TABLE IF NOT EXISTS jobkit_schema_version (version INTEGER NOT NULL);

-- name: has_schema_version
SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobkit_schema_version';

-- name: schema_version
SELECT coalesce(max(version), 0) FROM jobkit_schema_version;

-- name: clear_schema_version
DELETE FROM jobkit_schema_version;

-- name: set_schema_version
INSERT INTO jobkit_schema_version (version) VALUES (:version);


-- name: enqueue
-- one job, its own transaction; its id is the cursor's lastrowid (cheaper than RETURNING)
INSERT INTO jobkit_jobs (
    name, method, params, params_masked, status, priority, attempts, max_attempts, max_crashes,
    policy, created_at, available_at, queue, unique_key
) VALUES (
    :name, :method, :params, :params_masked, 'pending', :priority, 0, :max_attempts,
    :max_crashes, :policy, :now, coalesce(:available_at, :now), :queue, :unique_key
);

-- name: enqueue_batch
-- jobs alike but for their params, none of them secret: :params is a JSON array of the params'
-- JSON texts, so the stored texts are exactly the ones given, and SQLite makes the rows without
-- a round trip each
INSERT INTO jobkit_jobs (
    name, method, params, status, priority, attempts, max_attempts, max_crashes, policy,
    created_at, available_at, queue
)
SELECT
    :name, :method, value, 'pending', :priority, 0, :max_attempts, :max_crashes, :policy,
    :now, coalesce(:available_at, :now), :queue
FROM json_each(:params)
ORDER BY key;

-- name: enqueue_batch_masked
-- the same when some hold a secret: :params is a JSON array of [params, masked params] pairs
-- of JSON texts (the masked one null where nothing is secret)
INSERT INTO jobkit_jobs (
    name, method, params, params_masked, status, priority, attempts, max_attempts, max_crashes,
    policy, created_at, available_at, queue
)
SELECT
    :name, :method, json_extract(value, '$[0]'), json_extract(value, '$[1]'), 'pending',
    :priority, 0, :max_attempts, :max_crashes, :policy, :now, coalesce(:available_at, :now),
    :queue
FROM json_each(:params)
ORDER BY key;

-- name: get
SELECT * FROM jobkit_jobs WHERE id = :job_id;

-- name: exists
SELECT 1 FROM jobkit_jobs WHERE id = :job_id;

-- name: has_due_job
-- read-only, so idle pollers never take the write lock; INDEXED BY because without statistics
-- the planner prefers jobkit_jobs_status and sorts the whole backlog
SELECT 1 FROM jobkit_jobs INDEXED BY jobkit_jobs_claim
WHERE status IN ('pending', 'retrying') AND available_at <= :now
-- the worker's queues (:queues, a JSON array; null: all), none of them paused
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND queue NOT IN (SELECT name FROM jobkit_queues WHERE paused = 1)
LIMIT 1;

-- name: claim
-- the next :limit due jobs (a worker process's batch, or one); the rows come back in no set
-- order: the caller sorts them in claim order
UPDATE jobkit_jobs
SET status = 'running',
    -- an integer whatever a forged row holds (its CHECK), 2^63 - 1 included
    attempts = min(CAST(attempts AS INTEGER), 9223372036854775806) + 1,
    worker_id = :worker_id,
    started_at = :now,
    lease_expires_at = :lease_expires_at,
    progress = NULL,
    progress_message = NULL
WHERE id IN (
    SELECT id FROM jobkit_jobs INDEXED BY jobkit_jobs_claim
    WHERE status IN ('pending', 'retrying') AND available_at <= :now
      -- the worker's queues (:queues, a JSON array; null: all), none of them paused
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
      AND queue NOT IN (SELECT name FROM jobkit_queues WHERE paused = 1)
    ORDER BY priority DESC, available_at, id
    LIMIT :limit
)
RETURNING *;

-- name: set_aside
-- a job just claimed whose row cannot be read (jobkit.storage.rows): failed, in the claim's
-- transaction, and never run
UPDATE jobkit_jobs
SET status = 'failed', error = :error, finished_at = :now, worker_id = NULL,
    lease_expires_at = NULL
WHERE id = :job_id AND status = 'running';

-- name: open_attempt
INSERT INTO jobkit_attempts (job_id, attempt, worker_id, started_at)
VALUES (:job_id, :attempt, :worker_id, :now);

-- name: close_attempt
-- the one open attempt of a job (a job has an open attempt exactly while it is running)
UPDATE jobkit_attempts
SET finished_at = :now, outcome = :outcome, error = :error, traceback = :traceback
WHERE job_id = :job_id AND finished_at IS NULL;

-- name: heartbeat
UPDATE jobkit_jobs
SET lease_expires_at = :lease_expires_at
WHERE id = :job_id AND status = 'running' AND worker_id = :worker_id AND attempts = :attempt;

-- name: set_progress
UPDATE jobkit_jobs
SET progress = :progress, progress_message = :progress_message
WHERE id = :job_id AND status = 'running' AND worker_id = :worker_id AND attempts = :attempt;

-- name: complete
UPDATE jobkit_jobs
SET status = 'completed', result = :result, error = NULL, finished_at = :now,
    worker_id = NULL, lease_expires_at = NULL
WHERE id = :job_id AND status = 'running' AND worker_id = :worker_id AND attempts = :attempt
RETURNING *;

-- name: fail
UPDATE jobkit_jobs
SET status = 'failed', error = :error, finished_at = :now,
    worker_id = NULL, lease_expires_at = NULL
WHERE id = :job_id AND status = 'running' AND worker_id = :worker_id AND attempts = :attempt
RETURNING *;

-- name: schedule_retry
UPDATE jobkit_jobs
SET status = 'retrying', error = :error, available_at = :retry_at,
    worker_id = NULL, lease_expires_at = NULL
WHERE id = :job_id AND status = 'running' AND worker_id = :worker_id AND attempts = :attempt
RETURNING *;

-- name: release
-- the handed-back attempt does not count, and the job keeps its place in the queue
UPDATE jobkit_jobs
SET status = 'pending', attempts = attempts - 1,
    worker_id = NULL, lease_expires_at = NULL
WHERE id = :job_id AND status = 'running' AND worker_id = :worker_id AND attempts = :attempt
RETURNING *;

-- name: has_expired_lease
-- read-only: the supervisor asks every second; a write lock only when there is work
SELECT 1 FROM jobkit_jobs INDEXED BY jobkit_jobs_lease
WHERE status = 'running' AND lease_expires_at < :now
LIMIT 1;

-- name: close_expired_attempts
UPDATE jobkit_attempts
SET finished_at = :now,
    outcome = 'lost',
    error = 'lease expired: worker ' || coalesce(worker_id, '?') || ' stopped heartbeating'
WHERE finished_at IS NULL AND job_id IN (
    SELECT id FROM jobkit_jobs INDEXED BY jobkit_jobs_lease
    WHERE status = 'running' AND lease_expires_at < :now
);

-- name: requeue_expired
-- SET expressions see the row as it was, so worker_id is still the lost worker's and crashes
-- the count before this one; a crash gives its attempt back (max_attempts + 1) until the
-- max_crashes-th, which fails the job
UPDATE jobkit_jobs INDEXED BY jobkit_jobs_lease
SET status = CASE WHEN crashes + 1 < max_crashes THEN 'retrying' ELSE 'failed' END,
    error = 'lease expired: worker ' || coalesce(worker_id, '?') || ' stopped heartbeating'
        || CASE WHEN crashes + 1 < max_crashes THEN ''
           ELSE '; failed after ' || (min(crashes, 9223372036854775806) + 1)
               || ' crashes (max_crashes)' END,
    crashes = min(crashes, 9223372036854775806) + 1,  -- integers, even in a forged row
    max_attempts = CASE WHEN crashes + 1 < max_crashes
        THEN min(max_attempts, 9223372036854775806) + 1 ELSE max_attempts END,
    available_at = CASE WHEN crashes + 1 < max_crashes THEN :now ELSE available_at END,
    finished_at = CASE WHEN crashes + 1 < max_crashes THEN NULL ELSE :now END,
    worker_id = NULL,
    lease_expires_at = NULL
WHERE status = 'running' AND lease_expires_at < :now
RETURNING *;

-- name: cancel
UPDATE jobkit_jobs
SET status = 'cancelled', finished_at = :now, worker_id = NULL, lease_expires_at = NULL
WHERE id = :job_id AND status IN ('pending', 'retrying', 'running', 'blocked')
RETURNING *;

-- name: retry
UPDATE jobkit_jobs
SET status = 'pending', available_at = :now, error = NULL, finished_at = NULL,
    max_attempts = max(max_attempts, min(attempts, 9223372036854775806) + 1), crashes = 0
WHERE id = :job_id AND status IN ('failed', 'cancelled')
RETURNING *;

-- name: prune_candidates
-- the next :batch_size jobs of one final status to prune, after id :after (a read: it takes
-- no write lock however many rows it scans on the (status, id) index)
SELECT id FROM jobkit_jobs
WHERE status = :status AND id > :after AND finished_at < :finished_before
ORDER BY id LIMIT :batch_size;

-- name: prune_ids
-- delete the candidates (:ids, a JSON array) that still are as they were read; attempts and
-- log lines go with them (ON DELETE CASCADE)
DELETE FROM jobkit_jobs
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = :status
  AND finished_at < :finished_before;

-- name: attempts
SELECT * FROM jobkit_attempts WHERE job_id = :job_id ORDER BY id;

-- name: list
SELECT * FROM jobkit_jobs ORDER BY id DESC LIMIT :limit OFFSET :offset;

-- name: list_by_status
SELECT * FROM jobkit_jobs WHERE status = :status ORDER BY id DESC LIMIT :limit OFFSET :offset;

-- name: list_by_name
SELECT * FROM jobkit_jobs WHERE name = :name ORDER BY id DESC LIMIT :limit OFFSET :offset;

-- name: list_by_status_and_name
SELECT * FROM jobkit_jobs WHERE status = :status AND name = :name
ORDER BY id DESC LIMIT :limit OFFSET :offset;

-- name: count
SELECT count(*) FROM jobkit_jobs;

-- name: count_by_status
SELECT count(*) FROM jobkit_jobs WHERE status = :status;

-- name: count_by_name
SELECT count(*) FROM jobkit_jobs WHERE name = :name;

-- name: count_by_status_and_name
SELECT count(*) FROM jobkit_jobs WHERE status = :status AND name = :name;


-- name: register_worker
INSERT INTO jobkit_workers (worker_id, hostname, pid, supervisor_pid, started_at, last_seen_at)
VALUES (:worker_id, :hostname, :pid, :supervisor_pid, :started_at, :last_seen_at)
ON CONFLICT (worker_id) DO UPDATE SET last_seen_at = excluded.last_seen_at;

-- name: beat_worker
UPDATE jobkit_workers SET last_seen_at = :now WHERE worker_id = :worker_id;

-- name: remove_worker
DELETE FROM jobkit_workers WHERE worker_id = :worker_id;

-- name: forget_workers
DELETE FROM jobkit_workers WHERE last_seen_at < :seen_before;

-- name: list_workers
SELECT * FROM jobkit_workers ORDER BY hostname, supervisor_pid, worker_id;

-- name: oldest_waiting
SELECT min(available_at) AS oldest FROM jobkit_jobs
WHERE status IN ('pending', 'retrying') AND available_at <= :now;

-- name: add_throughput
INSERT INTO jobkit_throughput (minute, succeeded, failed) VALUES (:minute, :succeeded, :failed)
ON CONFLICT (minute) DO UPDATE SET
    succeeded = succeeded + excluded.succeeded, failed = failed + excluded.failed;

-- name: throughput
SELECT * FROM jobkit_throughput WHERE minute >= :since ORDER BY minute;

-- name: forget_throughput
DELETE FROM jobkit_throughput WHERE minute < :before;

-- name: add_job_log
INSERT INTO jobkit_job_logs (job_id, attempt, at, level, message)
SELECT :job_id, :attempt, :at, :level, :message WHERE EXISTS (
    SELECT 1 FROM jobkit_jobs WHERE id = :job_id
);

-- name: job_logs
SELECT * FROM jobkit_job_logs WHERE job_id = :job_id ORDER BY id;

-- name: revoke_session
INSERT INTO jobkit_revoked_sessions (id, expires_at) VALUES (:id, :expires_at)
ON CONFLICT (id) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at);

-- name: forget_revoked_sessions
DELETE FROM jobkit_revoked_sessions WHERE expires_at < :now;

-- name: set_queue_paused
INSERT INTO jobkit_queues (name, paused, changed_at) VALUES (:name, :paused, :now)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, changed_at = excluded.changed_at
WHERE jobkit_queues.paused <> excluded.paused
RETURNING name;

-- name: queue_states
-- every queue that holds a job or was ever paused: paused or not, waiting, running, and
-- attempts ended in the last minute (:since)
SELECT name, max(paused) AS paused, sum(waiting) AS waiting, sum(running) AS running,
       sum(done) AS done
FROM (
    SELECT queue AS name, 0 AS paused,
           sum(status IN ('pending', 'retrying')) AS waiting, sum(status = 'running') AS running,
           0 AS done
    FROM jobkit_jobs WHERE status IN ('pending', 'retrying', 'running') GROUP BY queue
    UNION ALL
    SELECT name, paused, 0, 0, 0 FROM jobkit_queues
    UNION ALL
    SELECT jobs.queue, 0, 0, 0, count(*)
    FROM jobkit_attempts AS attempts JOIN jobkit_jobs AS jobs ON jobs.id = attempts.job_id
    WHERE attempts.finished_at >= :since AND attempts.outcome IN ('succeeded', 'failed', 'timeout')
    GROUP BY jobs.queue
)
GROUP BY name
ORDER BY name;

-- name: paused_queues
SELECT name FROM jobkit_queues WHERE paused = 1 ORDER BY name;

-- name: claim_ids
-- the jobs a claim under limits picked (jobkit/storage/flow_claim.py): :ids, a JSON array
UPDATE jobkit_jobs
SET status = 'running',
    attempts = min(CAST(attempts AS INTEGER), 9223372036854775806) + 1,
    worker_id = :worker_id,
    started_at = :now,
    lease_expires_at = :lease_expires_at,
    progress = NULL,
    progress_message = NULL
WHERE id IN (SELECT value FROM json_each(:ids)) AND status IN ('pending', 'retrying')
RETURNING *;

-- name: claim_candidates
-- what a claim under limits may take, in claim order: the claim's filters, less the jobs
-- (:ex_names), queues (:ex_queues) and [job, parameter, JSON value] triples (:ex_keys) at
-- their limit
SELECT id, name, queue, params FROM jobkit_jobs INDEXED BY jobkit_jobs_claim
WHERE status IN ('pending', 'retrying') AND available_at <= :now
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND queue NOT IN (SELECT name FROM jobkit_queues WHERE paused = 1)
  AND name NOT IN (SELECT value FROM json_each(:ex_names))
  AND queue NOT IN (SELECT value FROM json_each(:ex_queues))
  -- the row's value and the excluded one both read by json_extract (a value as SQLite holds
  -- it: no two spellings of one JSON value differ); a row whose params are not JSON reads null
  AND NOT EXISTS (
      SELECT 1 FROM json_each(:ex_keys) AS ex
      WHERE json_extract(ex.value, '$[0]') = jobkit_jobs.name
        AND CASE WHEN json_valid(jobkit_jobs.params)
                 THEN json_extract(jobkit_jobs.params, '$.' || json_extract(ex.value, '$[1]'))
            END IS json_extract(ex.value, '$[2]')
  )
ORDER BY priority DESC, available_at, id
LIMIT :limit;

-- name: running_jobs
-- what the concurrency limits count (few rows: the jobs running now)
SELECT name, queue, params FROM jobkit_jobs INDEXED BY jobkit_jobs_lease
WHERE status = 'running';

-- name: flow_starts
SELECT limit_key, count(*) AS n, min(started_at) AS oldest FROM jobkit_flow_starts
WHERE limit_key >= :low AND limit_key < :high AND started_at > :since
GROUP BY limit_key;

-- name: forget_flow_starts
DELETE FROM jobkit_flow_starts
WHERE limit_key >= :low AND limit_key < :high AND started_at <= :since;

-- name: add_flow_start
INSERT INTO jobkit_flow_starts (limit_key, started_at) VALUES (:limit_key, :now);

-- name: unique_holder
-- the job that makes a new one with :unique_key a duplicate: pending, retrying or running, or
-- enqueued less than :within seconds ago (null: only the first three)
SELECT * FROM jobkit_jobs INDEXED BY jobkit_jobs_unique
WHERE unique_key = :unique_key
  AND (status IN ('pending', 'retrying', 'running')
       OR (:within IS NOT NULL AND created_at > :now - :within))
ORDER BY created_at DESC, id DESC
LIMIT 1;

-- name: schedule_seen
-- a schedule's state, made when a worker first sees it: no tick before :now is due
INSERT INTO jobkit_schedules (name, since) VALUES (:name, :now) ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: schedule_state
-- BEGIN IMMEDIATE holds the write lock: no other firing reads the state until this one commits
SELECT * FROM jobkit_schedules WHERE name = :name;

-- name: schedule_busy
-- overlap: skip: a run of the schedule pending, retrying or running, among its newest 100 (under
-- overlap: skip, runs are fired only when none is active, so an active one is among the last
-- firing's, which holds 100 at most)
SELECT 1 FROM (
    SELECT job_id FROM jobkit_schedule_runs WHERE schedule = :name ORDER BY tick DESC LIMIT 100
) AS runs JOIN jobkit_jobs AS jobs ON jobs.id = runs.job_id
WHERE jobs.status IN ('pending', 'retrying', 'running')
LIMIT 1;

-- name: add_schedule_run
INSERT INTO jobkit_schedule_runs (schedule, tick, job_id) VALUES (:name, :tick, :job_id)
RETURNING job_id;

-- name: schedule_handled
UPDATE jobkit_schedules SET last_tick = :last_tick, last_run_at = :last_run_at
WHERE name = :name
RETURNING name;

-- name: set_schedule_paused
-- after schedule_seen, in its transaction: a row only when the pause changed; a resume handles
-- every tick up to :now, so that ticks of the pause are not run later (no worker fired them)
UPDATE jobkit_schedules SET paused = :paused,
    last_tick = CASE WHEN :paused THEN last_tick ELSE max(coalesce(last_tick, since), :now) END
WHERE name = :name AND paused <> :paused
RETURNING name;

-- name: schedule_states
-- every schedule seen, with the job of its newest run when that job is still stored
SELECT schedules.*, runs.job_id
FROM jobkit_schedules AS schedules
LEFT JOIN jobkit_schedule_runs AS runs
    ON runs.schedule = schedules.name AND runs.tick = schedules.last_run_at
ORDER BY schedules.name;

-- name: schedule_runs
SELECT tick, job_id FROM jobkit_schedule_runs WHERE schedule = :name
ORDER BY tick DESC LIMIT :limit;

-- workflows (jobkit/storage/sql_workflows.py): a job that waits is stored 'blocked' with a
-- link and its parents; the change that ends a parent settles its blocked children

-- name: add_workflow
INSERT INTO jobkit_workflows (created_at) VALUES (:now) RETURNING id;

-- name: lock_parent
-- a job another waits for (PostgreSQL locks it; here the transaction is the only writer)
SELECT 1 FROM jobkit_jobs WHERE id = :job_id;

-- name: block_job
UPDATE jobkit_jobs SET status = 'blocked' WHERE id = :job_id AND status = 'pending';

-- name: add_link
INSERT INTO jobkit_job_links (
    job_id, workflow_id, needs, result_as, collect, label, max_params_bytes
) VALUES (:job_id, :workflow_id, :needs, :result_as, :collect, :label, :max_params_bytes);

-- name: add_parent
INSERT INTO jobkit_job_parents (child_id, position, parent_id)
VALUES (:child_id, :position, :parent_id);

-- name: link_of
SELECT * FROM jobkit_job_links WHERE job_id = :job_id;

-- name: parents_of
-- a parent deleted (prune) has no status: it had ended, and gives no result
SELECT p.parent_id, j.status, j.result
FROM jobkit_job_parents AS p LEFT JOIN jobkit_jobs AS j ON j.id = p.parent_id
WHERE p.child_id = :job_id
ORDER BY p.position;

-- name: unended_parent
-- one parent of a blocked job that has not ended, the last given first: the members of a group
-- end roughly in their order, so the look stops at once instead of reading every parent on
-- every member's end (none: every parent ended)
SELECT p.parent_id
FROM jobkit_job_parents AS p JOIN jobkit_jobs AS j ON j.id = p.parent_id
WHERE p.child_id = :job_id AND j.status IN ('pending', 'retrying', 'running', 'blocked')
ORDER BY p.position DESC
LIMIT 1;

-- name: status_of
SELECT status FROM jobkit_jobs WHERE id = :job_id;

-- name: blocked_children
SELECT DISTINCT p.child_id AS id
FROM jobkit_job_parents AS p JOIN jobkit_jobs AS j ON j.id = p.child_id
WHERE p.parent_id = :job_id AND j.status = 'blocked'
ORDER BY p.child_id;

-- name: release_blocked
-- a step's delay counts from its storing: a later due time stays
UPDATE jobkit_jobs
SET status = 'pending', params = coalesce(:params, params),
    available_at = max(available_at, :now)
WHERE id = :job_id AND status = 'blocked';

-- name: fail_blocked
-- a step whose released params would be over its max_params_bytes: it fails, never run
UPDATE jobkit_jobs
SET status = 'failed', error = :error, finished_at = :now
WHERE id = :job_id AND status = 'blocked'
RETURNING *;

-- name: cancel_blocked
UPDATE jobkit_jobs
SET status = 'cancelled', error = :error, finished_at = :now
WHERE id = :job_id AND status = 'blocked'
RETURNING *;

-- name: set_cascaded
UPDATE jobkit_job_links SET cascaded = :cascaded WHERE job_id = :job_id;

-- name: cascaded_children
SELECT DISTINCT p.child_id AS id
FROM jobkit_job_parents AS p
JOIN jobkit_job_links AS l ON l.job_id = p.child_id
JOIN jobkit_jobs AS j ON j.id = p.child_id
WHERE p.parent_id = :job_id AND l.cascaded = 1 AND j.status = 'cancelled'
ORDER BY p.child_id;

-- name: revive_cascaded
UPDATE jobkit_jobs
SET status = 'blocked', finished_at = NULL, error = NULL
WHERE id = :job_id AND status = 'cancelled'
RETURNING *;

-- name: retry_blocked
-- a manual retry of a step whose parents have not all completed: it waits again
UPDATE jobkit_jobs SET status = 'blocked' WHERE id = :job_id AND status = 'pending'
RETURNING *;

-- name: workflow
SELECT created_at FROM jobkit_workflows WHERE id = :workflow_id;

-- name: workflow_steps
SELECT l.job_id, l.label, l.needs, l.result_as, j.name, j.method, j.status
FROM jobkit_job_links AS l JOIN jobkit_jobs AS j ON j.id = l.job_id
WHERE l.workflow_id = :workflow_id
ORDER BY l.job_id;

-- name: workflow_parents
SELECT p.child_id, p.parent_id
FROM jobkit_job_parents AS p JOIN jobkit_job_links AS l ON l.job_id = p.child_id
WHERE l.workflow_id = :workflow_id
ORDER BY p.child_id, p.position;

-- name: workflow_unended
SELECT j.id
FROM jobkit_job_links AS l JOIN jobkit_jobs AS j ON j.id = l.job_id
WHERE l.workflow_id = :workflow_id AND j.status IN ('pending', 'retrying', 'running', 'blocked')
ORDER BY j.id;
