-- SQL of the PostgreSQL job store, in named sections read by jobkit/storage/postgres.py.
--
-- A section runs from its "-- name: <name>" line to the next one. Parameters are always bound
-- (%(name)s). Times are timestamptz. "%(now)s" is NULL unless the store was given a clock (tests):
-- then coalesce(%(now)s, now()) is the database's clock, so the clocks of the worker machines may
-- drift without moving a lease or a due time. Where a claim, an attempt or an end is stamped, the
-- time is statement_timestamp() instead (the statement's start, the same in every row it writes):
-- a transaction that waited on a row lock, say for the commit that released a workflow's step,
-- must not stamp that step's start before the release's end. "migration_<n>" sections build the
-- schema: each is applied once, in order, in one transaction holding an advisory lock, and the
-- schema version becomes the highest n. To change the schema, append a new migration; never
-- edit a shipped one.
-- Params, results and policies are "json", not "jsonb": json keeps any string (jsonb refuses
-- \u0000) and the exact text of numbers.

-- name: migration_1
CREATE TABLE IF NOT EXISTS jobkit_jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    method text NOT NULL,
    params json NOT NULL,
    status text NOT NULL CHECK (
        status IN ('pending', 'running', 'retrying', 'completed', 'failed', 'cancelled')
    ),
    priority integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    policy json NOT NULL,
    result json,
    error text,
    created_at timestamptz NOT NULL,
    available_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    worker_id text,
    lease_expires_at timestamptz,
    progress double precision,
    progress_message text
);

CREATE TABLE IF NOT EXISTS jobkit_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id bigint NOT NULL REFERENCES jobkit_jobs (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    worker_id text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    outcome text,
    error text,
    traceback text
);

CREATE INDEX IF NOT EXISTS jobkit_jobs_claim
    ON jobkit_jobs (priority DESC, available_at, id)
    WHERE status IN ('pending', 'retrying');

CREATE INDEX IF NOT EXISTS jobkit_jobs_lease
    ON jobkit_jobs (lease_expires_at)
    WHERE status = 'running';

CREATE INDEX IF NOT EXISTS jobkit_jobs_status ON jobkit_jobs (status, id);

CREATE INDEX IF NOT EXISTS jobkit_jobs_name ON jobkit_jobs (name, id);

CREATE INDEX IF NOT EXISTS jobkit_jobs_finished ON jobkit_jobs (finished_at)
    WHERE status IN ('completed', 'failed', 'cancelled');

CREATE INDEX IF NOT EXISTS jobkit_attempts_job ON jobkit_attempts (job_id, id);

CREATE INDEX IF NOT EXISTS jobkit_attempts_open ON jobkit_attempts (job_id)
    WHERE finished_at IS NULL;

-- idle workers LISTEN on jobkit_jobs: a job that becomes due now wakes them (NOTIFYs of one
-- transaction are sent once, at commit)
CREATE OR REPLACE FUNCTION jobkit_notify_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobkit_jobs', '');
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER jobkit_jobs_due
    AFTER INSERT OR UPDATE OF status ON jobkit_jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('pending', 'retrying') AND NEW.available_at <= now())
    EXECUTE FUNCTION jobkit_notify_due();

-- name: migration_2
-- crash accounting: attempts lost with their worker, counted apart from retries
ALTER TABLE jobkit_jobs ADD COLUMN IF NOT EXISTS crashes integer NOT NULL DEFAULT 0;
ALTER TABLE jobkit_jobs ADD COLUMN IF NOT EXISTS max_crashes integer NOT NULL DEFAULT 3;

-- name: migration_3
-- the worker processes alive, for the dashboard: their supervisors register and beat them
CREATE TABLE IF NOT EXISTS jobkit_workers (
    worker_id text PRIMARY KEY,
    hostname text NOT NULL,
    pid integer NOT NULL,
    supervisor_pid integer NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);

-- attempts ended per minute, for the dashboard's chart (added to by the supervisors)
CREATE TABLE IF NOT EXISTS jobkit_throughput (
    minute timestamptz PRIMARY KEY,
    succeeded integer NOT NULL DEFAULT 0,
    failed integer NOT NULL DEFAULT 0
);


-- name: migration_4
-- the lines jobs log through self.log, per attempt (capped by the worker), for the dashboard
CREATE TABLE IF NOT EXISTS jobkit_job_logs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id bigint NOT NULL REFERENCES jobkit_jobs (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    at timestamptz NOT NULL,
    level text NOT NULL,
    message text NOT NULL
);

CREATE INDEX IF NOT EXISTS jobkit_job_logs_job ON jobkit_job_logs (job_id, id);

-- name: migration_5
-- the params with their secrets masked, for a text search that cannot guess a secret (null
-- where nothing is secret: then the params themselves are searched)
ALTER TABLE jobkit_jobs ADD COLUMN IF NOT EXISTS params_masked text;

-- name: migration_6
-- dashboard sessions that were signed out, until their cookies expire anyway: every dashboard
-- process over this store refuses them (docs/decisions.md, "Dashboard sessions")
CREATE TABLE IF NOT EXISTS jobkit_revoked_sessions (
    id text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

-- name: migration_7
-- the store is a trust boundary: a time is one Python can read (not 'infinity', years 1 to
-- 9999, with a day's margin for the session's time zone), progress a fraction. The CHECKs
-- hold for every write from here; postgres.py then sets aside the rows written before that
-- they refuse (unreadable_rows, set_aside_unreadable) and validates them (validate_checks).
CREATE OR REPLACE FUNCTION jobkit_readable(t timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT t >= '0001-01-02 00:00:00+00'::timestamptz AND t < '9999-12-31 00:00:00+00'::timestamptz
$$;

ALTER TABLE jobkit_jobs
    ADD CONSTRAINT jobkit_jobs_created_at_readable CHECK (jobkit_readable(created_at))
        NOT VALID,
    ADD CONSTRAINT jobkit_jobs_available_at_readable CHECK (jobkit_readable(available_at))
        NOT VALID,
    ADD CONSTRAINT jobkit_jobs_started_at_readable CHECK (jobkit_readable(started_at))
        NOT VALID,
    ADD CONSTRAINT jobkit_jobs_finished_at_readable CHECK (jobkit_readable(finished_at))
        NOT VALID,
    ADD CONSTRAINT jobkit_jobs_lease_expires_at_readable CHECK (jobkit_readable(lease_expires_at))
        NOT VALID,
    ADD CONSTRAINT jobkit_jobs_progress_fraction CHECK (progress BETWEEN 0 AND 1)
        NOT VALID;

-- name: migration_8
-- named queues: each job waits in one, and a queue paused here is claimed from by no worker
-- (docs/queues.md); jobkit_queues keeps the queues that were ever paused or resumed
ALTER TABLE jobkit_jobs ADD COLUMN IF NOT EXISTS queue text NOT NULL DEFAULT 'default';

CREATE TABLE IF NOT EXISTS jobkit_queues (
    name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    changed_at timestamptz NOT NULL
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
    limit_key text NOT NULL,
    started_at timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS jobkit_flow_starts_key
    ON jobkit_flow_starts (limit_key COLLATE "C", started_at);

-- unique jobs: at most one job of a key pending, retrying or running (the index enforces it);
-- one enqueued within the key's period is found through the second
ALTER TABLE jobkit_jobs ADD COLUMN IF NOT EXISTS unique_key text;

CREATE UNIQUE INDEX IF NOT EXISTS jobkit_jobs_unique_active ON jobkit_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'retrying', 'running');

CREATE INDEX IF NOT EXISTS jobkit_jobs_unique ON jobkit_jobs (unique_key, created_at)
    WHERE unique_key IS NOT NULL;

-- name: migration_9
-- migration_7's time CHECKs with jobkit_readable's test written out, under the same names: a
-- CHECK that calls a SQL function has it inlined (its body parsed) again by every statement that
-- writes a row, which cost each enqueue, claim and completion about 30 us of the server's CPU.
-- The rows passed the same test already; adding each CHECK reads the table once to say so.
-- jobkit_readable stays, for the queries that look for rows it refuses.
ALTER TABLE jobkit_jobs
    DROP CONSTRAINT IF EXISTS jobkit_jobs_created_at_readable,
    ADD CONSTRAINT jobkit_jobs_created_at_readable CHECK (
        created_at >= '0001-01-02 00:00:00+00'::timestamptz
        AND created_at < '9999-12-31 00:00:00+00'::timestamptz),
    DROP CONSTRAINT IF EXISTS jobkit_jobs_available_at_readable,
    ADD CONSTRAINT jobkit_jobs_available_at_readable CHECK (
        available_at >= '0001-01-02 00:00:00+00'::timestamptz
        AND available_at < '9999-12-31 00:00:00+00'::timestamptz),
    DROP CONSTRAINT IF EXISTS jobkit_jobs_started_at_readable,
    ADD CONSTRAINT jobkit_jobs_started_at_readable CHECK (
        started_at >= '0001-01-02 00:00:00+00'::timestamptz
        AND started_at < '9999-12-31 00:00:00+00'::timestamptz),
    DROP CONSTRAINT IF EXISTS jobkit_jobs_finished_at_readable,
    ADD CONSTRAINT jobkit_jobs_finished_at_readable CHECK (
        finished_at >= '0001-01-02 00:00:00+00'::timestamptz
        AND finished_at < '9999-12-31 00:00:00+00'::timestamptz),
    DROP CONSTRAINT IF EXISTS jobkit_jobs_lease_expires_at_readable,
    ADD CONSTRAINT jobkit_jobs_lease_expires_at_readable CHECK (
        lease_expires_at >= '0001-01-02 00:00:00+00'::timestamptz
        AND lease_expires_at < '9999-12-31 00:00:00+00'::timestamptz);

-- name: migration_10
-- schedules (schedules: in jobs.yaml, docs/scheduling.md): a state per schedule name (paused,
-- when a worker first saw it, the newest tick handled and the newest tick that ran) and a run per
-- tick fired, keyed (schedule, tick) so that a tick is stored once however many workers race;
-- a run goes with its job (prune, retention), the state keeps the ticks
CREATE TABLE IF NOT EXISTS jobkit_schedules (
    name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    since timestamptz NOT NULL,
    last_tick timestamptz,
    last_run_at timestamptz
);

CREATE TABLE IF NOT EXISTS jobkit_schedule_runs (
    schedule text NOT NULL,
    tick timestamptz NOT NULL,
    job_id bigint NOT NULL REFERENCES jobkit_jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (schedule, tick)
);

-- a job deleted finds its run without reading the others
CREATE INDEX IF NOT EXISTS jobkit_schedule_runs_job ON jobkit_schedule_runs (job_id);

-- name: migration_11
-- jobkit's own enqueue statement sends the NOTIFY of a row it inserts due now (postgres.py's
-- enqueue, below): the trigger's plpgsql call cost every enqueue about 20 us of the server's CPU.
-- The trigger stays for rows that become due by an UPDATE (a retry, a release, a lease taken
-- back), and for rows inserted by any session that does not say it notifies itself (a row
-- written by hand or by another program still wakes the workers); jobkit's connections say so
-- with the setting jobkit.notifies_inserts = 'on' (jobkit/storage/postgres_pool.py).
DROP TRIGGER IF EXISTS jobkit_jobs_due ON jobkit_jobs;

CREATE TRIGGER jobkit_jobs_due
    AFTER UPDATE OF status ON jobkit_jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('pending', 'retrying') AND NEW.available_at <= now())
    EXECUTE FUNCTION jobkit_notify_due();

CREATE TRIGGER jobkit_jobs_inserted_due
    AFTER INSERT ON jobkit_jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('pending', 'retrying') AND NEW.available_at <= now()
        AND current_setting('jobkit.notifies_inserts', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION jobkit_notify_due();

-- name: migration_12
-- workflows (docs/decisions.md, "Workflows (issue 20)"): a job that waits for others is
-- 'blocked' (the status CHECK of migration_1, widened: added NOT VALID and validated at once,
-- in the migration's transaction; every row passes, the old CHECK was narrower), its place in
-- the graph is a link (its workflow, what it needs of its parents, the parameter their results
-- go to) and its parents are rows of jobkit_job_parents, found from the parent that ends (no
-- foreign key on parent_id: a parent deleted by prune counts as ended, its result null)
ALTER TABLE jobkit_jobs
    DROP CONSTRAINT IF EXISTS jobkit_jobs_status_check,
    ADD CONSTRAINT jobkit_jobs_status_check CHECK (
        status IN ('pending', 'running', 'retrying', 'completed', 'failed', 'cancelled', 'blocked')
    ) NOT VALID;

ALTER TABLE jobkit_jobs VALIDATE CONSTRAINT jobkit_jobs_status_check;

CREATE TABLE IF NOT EXISTS jobkit_workflows (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS jobkit_job_links (
    job_id bigint PRIMARY KEY REFERENCES jobkit_jobs (id) ON DELETE CASCADE,
    workflow_id bigint REFERENCES jobkit_workflows (id) ON DELETE CASCADE,
    needs text NOT NULL CHECK (needs IN ('completed', 'ended')),
    result_as text,
    collect integer NOT NULL CHECK (collect IN (0, 1)),
    label text NOT NULL,
    -- cancelled because a parent did not complete: a retry of that parent revives it
    cascaded integer NOT NULL DEFAULT 0 CHECK (cascaded IN (0, 1))
);

CREATE INDEX IF NOT EXISTS jobkit_job_links_workflow ON jobkit_job_links (workflow_id, job_id)
    WHERE workflow_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS jobkit_job_parents (
    child_id bigint NOT NULL REFERENCES jobkit_job_links (job_id) ON DELETE CASCADE,
    position integer NOT NULL,
    parent_id bigint NOT NULL,
    PRIMARY KEY (child_id, position)
);

-- a job that ends finds its children without reading the others
CREATE INDEX IF NOT EXISTS jobkit_job_parents_parent ON jobkit_job_parents (parent_id);

-- a job others wait for says so on its row, set in the link's transaction: the settle that ends
-- a job without children (every job of a plain drain) reads it from the row it updates and looks
-- up no children (a look-up per completion cost about 70 us of the client's CPU)
ALTER TABLE jobkit_jobs ADD COLUMN IF NOT EXISTS has_children boolean NOT NULL DEFAULT false;

-- (once per statement, from its transition table: a group's 10,000 parent rows are one UPDATE)
CREATE OR REPLACE FUNCTION jobkit_has_children() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE jobkit_jobs SET has_children = true
    WHERE id IN (SELECT parent_id FROM jobkit_parents_added) AND NOT has_children;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER jobkit_job_parents_added
    AFTER INSERT ON jobkit_job_parents
    REFERENCING NEW TABLE AS jobkit_parents_added
    FOR EACH STATEMENT EXECUTE FUNCTION jobkit_has_children();

-- name: migration_13
-- the most bytes of JSON a step's params may take once its parents' results are written in
-- (its job's max_params_bytes when stored; null: not checked, as for a link stored before):
-- over it, the release fails the step instead (docs/decisions.md, "Workflows (issue 20)")
ALTER TABLE jobkit_job_links ADD COLUMN IF NOT EXISTS max_params_bytes integer;

-- name: migration_14
-- await_job (docs/async.md) LISTENs on jobkit_ends: each job that ends (completed, failed,
-- cancelled; by a worker, a cancel, a cascade, a lease lost for the last time) sends its id,
-- at commit. The WHEN test costs a status change that ends nothing (a claim, a retry) nothing;
-- each end pays one trigger call (the drain's cost is measured in docs/async.md).
CREATE OR REPLACE FUNCTION jobkit_notify_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobkit_ends', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER jobkit_jobs_ended
    AFTER UPDATE OF status ON jobkit_jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('completed', 'failed', 'cancelled')
        AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION jobkit_notify_ended();

-- name: validate_checks
-- migration_7's CHECKs, once no row breaks them
ALTER TABLE jobkit_jobs
    VALIDATE CONSTRAINT jobkit_jobs_created_at_readable,
    VALIDATE CONSTRAINT jobkit_jobs_available_at_readable,
    VALIDATE CONSTRAINT jobkit_jobs_started_at_readable,
    VALIDATE CONSTRAINT jobkit_jobs_finished_at_readable,
    VALIDATE CONSTRAINT jobkit_jobs_lease_expires_at_readable,
    VALIDATE CONSTRAINT jobkit_jobs_progress_fraction;

-- name: unreadable_rows
-- the rows migration_7's CHECKs refuse (a null passes a CHECK)
SELECT * FROM jobkit_jobs
WHERE NOT jobkit_readable(created_at) OR NOT jobkit_readable(available_at)
    OR NOT jobkit_readable(started_at) OR NOT jobkit_readable(finished_at)
    OR NOT jobkit_readable(lease_expires_at) OR NOT progress BETWEEN 0 AND 1;

-- name: set_aside_unreadable
-- one of unreadable_rows set aside: failed, %(error)s quoting what each bad column held,
-- which gets a stand-in (a time the migration's, an optional value null)
UPDATE jobkit_jobs
SET status = 'failed',
    error = %(error)s,
    created_at = CASE WHEN jobkit_readable(created_at) THEN created_at
        ELSE coalesce(%(now)s, now()) END,
    available_at = CASE WHEN jobkit_readable(available_at) THEN available_at
        ELSE coalesce(%(now)s, now()) END,
    started_at = CASE WHEN jobkit_readable(started_at) THEN started_at END,
    finished_at = coalesce(%(now)s, now()),
    progress = CASE WHEN progress BETWEEN 0 AND 1 THEN progress END,
    worker_id = NULL,
    lease_expires_at = NULL
WHERE id = %(job_id)s;

-- name: create_schema_version
CREATE TABLE IF NOT EXISTS jobkit_schema_version (version integer NOT NULL);

-- name: schema_version
SELECT coalesce(max(version), 0) FROM jobkit_schema_version;

-- name: has_schema_version
SELECT to_regclass('jobkit_schema_version') IS NOT NULL;

-- name: lock_migrations
SELECT pg_advisory_xact_lock(727379968);

-- name: clear_schema_version
DELETE FROM jobkit_schema_version;

-- name: set_schema_version
INSERT INTO jobkit_schema_version (version) VALUES (%(version)s);


-- name: now
SELECT now();

-- name: enqueue
INSERT INTO jobkit_jobs (
    name, method, params, params_masked, status, priority, attempts, max_attempts, max_crashes,
    policy, created_at, available_at, queue, unique_key
) VALUES (
    %(name)s, %(method)s, %(params)s::json, %(params_masked)s, 'pending', %(priority)s, 0,
    %(max_attempts)s, %(max_crashes)s, %(policy)s::json, coalesce(%(now)s, now()),
    coalesce(%(available_at)s, %(now)s, now()), %(queue)s, %(unique_key)s
)
-- the rest of the new record is known (jobkit.storage.postgres._inserted); the times as UTC
-- timestamps, which psycopg reads in C (its timestamptz loader is wrapped in Python to read what
-- Python cannot hold, and the CHECKs keep such times out of a row). A job due now wakes the idle
-- workers here, as the trigger would for another session's insert (migration_11): the NOTIFYs of
-- one transaction are sent once, at its commit
RETURNING id, created_at AT TIME ZONE 'UTC' AS created_at,
    available_at AT TIME ZONE 'UTC' AS available_at,
    CASE WHEN available_at <= now() THEN pg_notify('jobkit_jobs', '') END AS notified;

-- name: get
SELECT * FROM jobkit_jobs WHERE id = %(job_id)s;

-- name: exists
SELECT 1 FROM jobkit_jobs WHERE id = %(job_id)s;

-- name: claim
-- claim the next due job and open its attempt in one statement (one round trip for a busy
-- worker); SKIP LOCKED: concurrent claimers each take a different row instead of queueing on one
WITH next AS (
    SELECT id FROM jobkit_jobs
    WHERE status IN ('pending', 'retrying') AND available_at <= coalesce(%(now)s, statement_timestamp())
      -- the worker's queues (null: all), none of them paused
      AND (%(queues)s::text[] IS NULL OR queue = ANY (%(queues)s::text[]))
      AND queue NOT IN (SELECT name FROM jobkit_queues WHERE paused)
    ORDER BY priority DESC, available_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE jobkit_jobs AS jobs
    SET status = 'running',
        attempts = least(jobs.attempts, 2147483646) + 1,  -- a forged 2^31 - 1 must not stop claims
        worker_id = %(worker_id)s,
        started_at = coalesce(%(now)s, statement_timestamp()),
        lease_expires_at = coalesce(%(now)s, statement_timestamp()) + make_interval(secs => %(lease_seconds)s),
        progress = NULL,
        progress_message = NULL
    FROM next
    WHERE jobs.id = next.id
    RETURNING jobs.*
),
opened AS (
    INSERT INTO jobkit_attempts (job_id, attempt, worker_id, started_at)
    SELECT id, attempts, worker_id, started_at FROM claimed
)
SELECT * FROM claimed;

-- name: set_aside
-- a job just claimed whose row cannot be read (jobkit.storage.rows): failed, in the claim's
-- transaction, and never run
UPDATE jobkit_jobs
SET status = 'failed', error = %(error)s, finished_at = coalesce(%(now)s, statement_timestamp()),
    worker_id = NULL, lease_expires_at = NULL
WHERE id = %(job_id)s AND status = 'running'
RETURNING id;

-- name: close_attempt
UPDATE jobkit_attempts
SET finished_at = coalesce(%(now)s, statement_timestamp()), outcome = %(outcome)s, error = %(error)s,
    traceback = %(traceback)s
WHERE job_id = %(job_id)s AND finished_at IS NULL;

-- name: heartbeat
UPDATE jobkit_jobs
SET lease_expires_at = coalesce(%(now)s, now()) + make_interval(secs => %(lease_seconds)s)
WHERE id = %(job_id)s AND status = 'running' AND worker_id = %(worker_id)s
    AND attempts = %(attempt)s;

-- name: set_progress
UPDATE jobkit_jobs
SET progress = %(progress)s, progress_message = %(progress_message)s
WHERE id = %(job_id)s AND status = 'running' AND worker_id = %(worker_id)s
    AND attempts = %(attempt)s;

-- name: complete
UPDATE jobkit_jobs
SET status = 'completed', result = %(result)s::json, error = NULL,
    finished_at = coalesce(%(now)s, statement_timestamp()), worker_id = NULL, lease_expires_at = NULL
WHERE id = %(job_id)s AND status = 'running' AND worker_id = %(worker_id)s
    AND attempts = %(attempt)s
RETURNING *;

-- name: fail
UPDATE jobkit_jobs
SET status = 'failed', error = %(error)s, finished_at = coalesce(%(now)s, statement_timestamp()),
    worker_id = NULL, lease_expires_at = NULL
WHERE id = %(job_id)s AND status = 'running' AND worker_id = %(worker_id)s
    AND attempts = %(attempt)s
RETURNING *;

-- name: schedule_retry
UPDATE jobkit_jobs
SET status = 'retrying', error = %(error)s, available_at = %(retry_at)s,
    worker_id = NULL, lease_expires_at = NULL
WHERE id = %(job_id)s AND status = 'running' AND worker_id = %(worker_id)s
    AND attempts = %(attempt)s
RETURNING *;

-- name: release
UPDATE jobkit_jobs
SET status = 'pending', attempts = attempts - 1, worker_id = NULL, lease_expires_at = NULL
WHERE id = %(job_id)s AND status = 'running' AND worker_id = %(worker_id)s
    AND attempts = %(attempt)s
RETURNING *;

-- name: has_expired_lease
SELECT 1 FROM jobkit_jobs
WHERE status = 'running' AND lease_expires_at < coalesce(%(now)s, now())
LIMIT 1;

-- name: requeue_expired
-- FOR UPDATE SKIP LOCKED: two supervisors never take back the same job; the old worker_id is
-- read from the locked row before the update clears it
WITH expired AS (
    -- crash: the count with this one, which never overflows (a forged row must not stop this)
    SELECT id, worker_id, least(crashes, 2147483646) + 1 AS crash FROM jobkit_jobs
    WHERE status = 'running' AND lease_expires_at < coalesce(%(now)s, statement_timestamp())
    FOR UPDATE SKIP LOCKED
), closed AS (
    UPDATE jobkit_attempts AS attempts
    SET finished_at = coalesce(%(now)s, statement_timestamp()),
        outcome = 'lost',
        error = 'lease expired: worker ' || coalesce(expired.worker_id, '?')
            || ' stopped heartbeating'
    FROM expired
    WHERE attempts.job_id = expired.id AND attempts.finished_at IS NULL
)
-- SET expressions see the row as it was (crashes is the count before this one); a crash gives
-- its attempt back (max_attempts + 1) until the max_crashes-th, which fails the job
UPDATE jobkit_jobs AS jobs
SET status = CASE WHEN expired.crash < jobs.max_crashes THEN 'retrying' ELSE 'failed' END,
    error = 'lease expired: worker ' || coalesce(expired.worker_id, '?') || ' stopped heartbeating'
        || CASE WHEN expired.crash < jobs.max_crashes THEN ''
           ELSE '; failed after ' || expired.crash || ' crashes (max_crashes)' END,
    crashes = expired.crash,
    max_attempts = CASE WHEN expired.crash < jobs.max_crashes
        THEN least(jobs.max_attempts, 2147483646) + 1 ELSE jobs.max_attempts END,
    available_at = CASE WHEN expired.crash < jobs.max_crashes
        -- now(), not the statement's time: migration_11's trigger wakes the idle workers for
        -- a row due at now()
        THEN coalesce(%(now)s, now()) ELSE jobs.available_at END,
    finished_at = CASE WHEN expired.crash < jobs.max_crashes
        THEN NULL ELSE coalesce(%(now)s, statement_timestamp()) END,
    worker_id = NULL,
    lease_expires_at = NULL
FROM expired
WHERE jobs.id = expired.id
RETURNING jobs.*;

-- name: cancel
UPDATE jobkit_jobs
SET status = 'cancelled', finished_at = coalesce(%(now)s, statement_timestamp()), worker_id = NULL,
    lease_expires_at = NULL
WHERE id = %(job_id)s AND status IN ('pending', 'retrying', 'running', 'blocked')
RETURNING *;

-- name: retry
UPDATE jobkit_jobs
SET status = 'pending', available_at = coalesce(%(now)s, now()), error = NULL,
    finished_at = NULL, max_attempts = greatest(max_attempts, least(attempts, 2147483646) + 1),
    crashes = 0
WHERE id = %(job_id)s AND status IN ('failed', 'cancelled')
RETURNING *;

-- name: prune_candidates
-- the next %(batch_size)s jobs of one final status to prune, after id %(after)s (a read)
SELECT id FROM jobkit_jobs
WHERE status = %(status)s AND id > %(after)s AND finished_at < %(finished_before)s
ORDER BY id LIMIT %(batch_size)s;

-- name: prune_ids
-- delete the candidates that still are as they were read; attempts and log lines go with
-- them (ON DELETE CASCADE)
DELETE FROM jobkit_jobs
WHERE id = ANY (%(ids)s::bigint[]) AND status = %(status)s
  AND finished_at < %(finished_before)s;

-- name: attempts
SELECT * FROM jobkit_attempts WHERE job_id = %(job_id)s ORDER BY id;


-- name: register_worker
INSERT INTO jobkit_workers (worker_id, hostname, pid, supervisor_pid, started_at, last_seen_at)
VALUES (%(worker_id)s, %(hostname)s, %(pid)s, %(supervisor_pid)s, %(started_at)s,
        %(last_seen_at)s)
ON CONFLICT (worker_id) DO UPDATE SET last_seen_at = excluded.last_seen_at;

-- name: beat_worker
UPDATE jobkit_workers SET last_seen_at = %(now)s WHERE worker_id = %(worker_id)s;

-- name: remove_worker
DELETE FROM jobkit_workers WHERE worker_id = %(worker_id)s;

-- name: forget_workers
DELETE FROM jobkit_workers WHERE last_seen_at < %(seen_before)s;

-- name: list_workers
SELECT * FROM jobkit_workers ORDER BY hostname, supervisor_pid, worker_id;

-- name: oldest_waiting
SELECT min(available_at) AS oldest FROM jobkit_jobs
WHERE status IN ('pending', 'retrying') AND available_at <= coalesce(%(now)s, now());

-- name: add_throughput
INSERT INTO jobkit_throughput (minute, succeeded, failed)
VALUES (%(minute)s, %(succeeded)s, %(failed)s)
ON CONFLICT (minute) DO UPDATE SET
    succeeded = jobkit_throughput.succeeded + excluded.succeeded,
    failed = jobkit_throughput.failed + excluded.failed;

-- name: throughput
SELECT * FROM jobkit_throughput WHERE minute >= %(since)s ORDER BY minute;

-- name: forget_throughput
DELETE FROM jobkit_throughput WHERE minute < %(before)s;

-- name: add_job_log
INSERT INTO jobkit_job_logs (job_id, attempt, at, level, message)
SELECT %(job_id)s, %(attempt)s, %(at)s, %(level)s, %(message)s WHERE EXISTS (
    SELECT 1 FROM jobkit_jobs WHERE id = %(job_id)s
);

-- name: job_logs
SELECT * FROM jobkit_job_logs WHERE job_id = %(job_id)s ORDER BY id;

-- name: revoke_session
INSERT INTO jobkit_revoked_sessions (id, expires_at) VALUES (%(id)s, %(expires_at)s)
ON CONFLICT (id) DO UPDATE SET
    expires_at = greatest(jobkit_revoked_sessions.expires_at, excluded.expires_at);

-- name: forget_revoked_sessions
DELETE FROM jobkit_revoked_sessions WHERE expires_at < coalesce(%(now)s, now());

-- name: set_queue_paused
INSERT INTO jobkit_queues (name, paused, changed_at)
VALUES (%(name)s, %(paused)s, coalesce(%(now)s, now()))
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, changed_at = excluded.changed_at
WHERE jobkit_queues.paused <> excluded.paused
RETURNING name;

-- name: queue_states
-- every queue that holds a job or was ever paused: paused or not, waiting, running, and
-- attempts ended in the last minute (%(since)s)
SELECT name, bool_or(paused) AS paused, sum(waiting)::bigint AS waiting,
       sum(running)::bigint AS running, sum(done)::bigint AS done
FROM (
    SELECT queue AS name, false AS paused,
           count(*) FILTER (WHERE status IN ('pending', 'retrying')) AS waiting,
           count(*) FILTER (WHERE status = 'running') AS running, 0 AS done
    FROM jobkit_jobs WHERE status IN ('pending', 'retrying', 'running') GROUP BY queue
    UNION ALL
    SELECT name, paused, 0, 0, 0 FROM jobkit_queues
    UNION ALL
    SELECT jobs.queue, false, 0, 0, count(*)
    FROM jobkit_attempts AS attempts JOIN jobkit_jobs AS jobs ON jobs.id = attempts.job_id
    WHERE attempts.finished_at >= %(since)s
      AND attempts.outcome IN ('succeeded', 'failed', 'timeout')
    GROUP BY jobs.queue
) AS parts
GROUP BY name
ORDER BY name;

-- name: paused_queues
SELECT name FROM jobkit_queues WHERE paused ORDER BY name;

-- name: lock_flow
-- claims under limits, one at a time across every process and machine (released at commit)
SELECT pg_advisory_xact_lock(7235906104021370117);

-- name: clock
SELECT clock_timestamp() AS now;

-- name: claim_candidates
-- what a claim under limits may take, in claim order: the claim's filters, less the jobs
-- (ex_names), queues (ex_queues) and [job, parameter, JSON value] triples (ex_keys) at their
-- limit
SELECT id, name, queue, params FROM jobkit_jobs
WHERE status IN ('pending', 'retrying') AND available_at <= coalesce(%(now)s, now())
  AND (%(queues)s::text[] IS NULL OR queue = ANY (%(queues)s::text[]))
  AND queue NOT IN (SELECT name FROM jobkit_queues WHERE paused)
  AND name <> ALL (%(ex_names)s::text[])
  AND queue <> ALL (%(ex_queues)s::text[])
  AND NOT EXISTS (
      SELECT 1 FROM json_array_elements(%(ex_keys)s::json) AS ex
      WHERE ex ->> 0 = jobkit_jobs.name
        -- compared as jsonb: no two spellings of one JSON value differ
        AND coalesce((jobkit_jobs.params -> (ex ->> 1))::jsonb, 'null'::jsonb) = (ex -> 2)::jsonb
  )
ORDER BY priority DESC, available_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: claim_ids
-- the jobs a claim under limits picked, their attempts opened
WITH claimed AS (
    UPDATE jobkit_jobs AS jobs
    SET status = 'running',
        attempts = least(jobs.attempts, 2147483646) + 1,
        worker_id = %(worker_id)s,
        started_at = coalesce(%(now)s, statement_timestamp()),
        lease_expires_at = coalesce(%(now)s, statement_timestamp()) + make_interval(secs => %(lease_seconds)s),
        progress = NULL,
        progress_message = NULL
    WHERE jobs.id = ANY (%(ids)s::bigint[]) AND jobs.status IN ('pending', 'retrying')
    RETURNING jobs.*
),
opened AS (
    INSERT INTO jobkit_attempts (job_id, attempt, worker_id, started_at)
    SELECT id, attempts, worker_id, started_at FROM claimed
)
SELECT * FROM claimed;

-- name: running_jobs
-- what the concurrency limits count (few rows: the jobs running now)
SELECT name, queue, params FROM jobkit_jobs WHERE status = 'running';

-- name: flow_starts
SELECT limit_key, count(*) AS n, min(started_at) AS oldest FROM jobkit_flow_starts
WHERE limit_key COLLATE "C" >= %(low)s AND limit_key COLLATE "C" < %(high)s
  AND started_at > %(since)s
GROUP BY limit_key;

-- name: forget_flow_starts
DELETE FROM jobkit_flow_starts
WHERE limit_key COLLATE "C" >= %(low)s AND limit_key COLLATE "C" < %(high)s
  AND started_at <= %(since)s;

-- name: add_flow_start
INSERT INTO jobkit_flow_starts (limit_key, started_at) VALUES (%(limit_key)s, %(now)s);

-- name: lock_unique
-- enqueues of one unique key, one at a time (released at commit)
SELECT pg_advisory_xact_lock(hashtextextended(%(unique_key)s, 1));

-- name: unique_holder
-- the job that makes a new one with unique_key a duplicate: pending, retrying or running, or
-- enqueued less than `within` seconds ago (null: only the first three)
SELECT * FROM jobkit_jobs
WHERE unique_key = %(unique_key)s
  AND (status IN ('pending', 'retrying', 'running')
       OR (%(within)s::float8 IS NOT NULL
           AND created_at > coalesce(%(now)s, now()) - make_interval(secs => %(within)s)))
ORDER BY created_at DESC, id DESC
LIMIT 1;

-- name: schedule_seen
-- a schedule's state, made when a worker first sees it: no tick before now is due
INSERT INTO jobkit_schedules (name, since) VALUES (%(name)s, %(now)s)
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: schedule_state
-- locked: another worker's firing of the schedule waits until this one commits
SELECT * FROM jobkit_schedules WHERE name = %(name)s FOR UPDATE;

-- name: schedule_busy
-- overlap: skip: a run of the schedule pending, retrying or running, among its newest 100 (under
-- overlap: skip, runs are fired only when none is active, so an active one is among the last
-- firing's, which holds 100 at most)
SELECT 1 FROM (
    SELECT job_id FROM jobkit_schedule_runs WHERE schedule = %(name)s
    ORDER BY tick DESC LIMIT 100
) AS runs JOIN jobkit_jobs AS jobs ON jobs.id = runs.job_id
WHERE jobs.status IN ('pending', 'retrying', 'running')
LIMIT 1;

-- name: add_schedule_run
INSERT INTO jobkit_schedule_runs (schedule, tick, job_id) VALUES (%(name)s, %(tick)s, %(job_id)s)
RETURNING job_id;

-- name: schedule_handled
UPDATE jobkit_schedules SET last_tick = %(last_tick)s, last_run_at = %(last_run_at)s
WHERE name = %(name)s
RETURNING name;

-- name: set_schedule_paused
-- after schedule_seen, in its transaction: a row only when the pause changed; a resume handles
-- every tick up to now, so that ticks of the pause are not run later (no worker fired them)
UPDATE jobkit_schedules SET paused = %(paused)s,
    last_tick = CASE WHEN %(paused)s THEN last_tick
                     ELSE greatest(coalesce(last_tick, since), %(now)s) END
WHERE name = %(name)s AND paused <> %(paused)s
RETURNING name;

-- name: schedule_states
-- every schedule seen, with the job of its newest run when that job is still stored
SELECT schedules.*, runs.job_id
FROM jobkit_schedules AS schedules
LEFT JOIN jobkit_schedule_runs AS runs
    ON runs.schedule = schedules.name AND runs.tick = schedules.last_run_at
ORDER BY schedules.name;

-- name: schedule_runs
SELECT tick, job_id FROM jobkit_schedule_runs WHERE schedule = %(name)s
ORDER BY tick DESC LIMIT %(limit)s;

-- workflows (jobkit/storage/sql_workflows.py): a job that waits is stored 'blocked' with a
-- link and its parents; the change that ends a parent settles its blocked children (a release
-- is an UPDATE of status to 'pending': the trigger of migration_11 wakes the idle workers)

-- name: add_workflow
INSERT INTO jobkit_workflows (created_at) VALUES (coalesce(%(now)s, now())) RETURNING id;

-- name: lock_parent
-- a job others will wait for: its end waits for their storing to commit, then finds them (FOR
-- NO KEY UPDATE, not FOR SHARE: the link's trigger updates the row, and two transactions that
-- each held a share lock of it would deadlock upgrading)
SELECT 1 FROM jobkit_jobs WHERE id = %(job_id)s FOR NO KEY UPDATE;

-- name: block_jobs
UPDATE jobkit_jobs SET status = 'blocked'
WHERE id = ANY(%(job_ids)s::bigint[]) AND status = 'pending';

-- name: add_links
-- the links of many steps in one statement: each parameter an array, one column of all rows
INSERT INTO jobkit_job_links (
    job_id, workflow_id, needs, result_as, collect, label, max_params_bytes
)
SELECT * FROM unnest(%(job_id)s::bigint[], %(workflow_id)s::bigint[], %(needs)s::text[],
                     %(result_as)s::text[], %(collect)s::integer[], %(label)s::text[],
                     %(max_params_bytes)s::integer[]);

-- name: add_parents
-- the same for their parents
INSERT INTO jobkit_job_parents (child_id, position, parent_id)
SELECT * FROM unnest(%(child_id)s::bigint[], %(position)s::integer[], %(parent_id)s::bigint[]);

-- name: link_of
SELECT * FROM jobkit_job_links WHERE job_id = %(job_id)s;

-- name: parents_of
-- a parent deleted (prune) has no status: it had ended, and gives no result
SELECT p.parent_id, j.status, j.result
FROM jobkit_job_parents AS p LEFT JOIN jobkit_jobs AS j ON j.id = p.parent_id
WHERE p.child_id = %(job_id)s
ORDER BY p.position;

-- name: unended_parent
-- one parent of a blocked job that has not ended, the last given first (none: every parent
-- ended); read after the child's row is locked, so a parent ended by another committed
-- transaction is seen
SELECT p.parent_id
FROM jobkit_job_parents AS p JOIN jobkit_jobs AS j ON j.id = p.parent_id
WHERE p.child_id = %(job_id)s AND j.status IN ('pending', 'retrying', 'running', 'blocked')
ORDER BY p.position DESC
LIMIT 1;

-- name: status_of
SELECT status FROM jobkit_jobs WHERE id = %(job_id)s;

-- name: blocked_children
-- locked in id order (no deadlock between two parents ending at once): the second waits for
-- the first to commit, then reads the row again (a child the first released is no longer
-- blocked) and the parents as they are now
SELECT j.id
FROM jobkit_jobs AS j
WHERE j.id IN (SELECT p.child_id FROM jobkit_job_parents AS p WHERE p.parent_id = %(job_id)s)
    AND j.status = 'blocked'
ORDER BY j.id
FOR UPDATE OF j;

-- name: blocked_children_of_all
-- the blocked children of a batch's completions, all locked by this one statement in id order:
-- two batches whose jobs share children crosswise wait for each other, never deadlock
SELECT j.id
FROM jobkit_jobs AS j
WHERE j.id IN (SELECT p.child_id FROM jobkit_job_parents AS p
               WHERE p.parent_id = ANY (%(job_ids)s::bigint[]))
    AND j.status = 'blocked'
ORDER BY j.id
FOR UPDATE OF j;

-- name: release_blocked
-- a step's delay counts from its storing: a later due time stays
UPDATE jobkit_jobs
SET status = 'pending', params = coalesce(%(params)s::json, params),
    available_at = greatest(available_at, coalesce(%(now)s, now()))
WHERE id = %(job_id)s AND status = 'blocked';

-- name: fail_blocked
-- a step whose released params would be over its max_params_bytes: it fails, never run
UPDATE jobkit_jobs
SET status = 'failed', error = %(error)s, finished_at = coalesce(%(now)s, statement_timestamp())
WHERE id = %(job_id)s AND status = 'blocked'
RETURNING *;

-- name: cancel_blocked
UPDATE jobkit_jobs
SET status = 'cancelled', error = %(error)s, finished_at = coalesce(%(now)s, statement_timestamp())
WHERE id = %(job_id)s AND status = 'blocked'
RETURNING *;

-- name: set_cascaded
UPDATE jobkit_job_links SET cascaded = %(cascaded)s WHERE job_id = %(job_id)s;

-- name: cascaded_children
-- what a manual retry revives, locked in id order (as blocked_children) before it reads their
-- parents: a concurrent cancel or settle of one waits, or is waited for
SELECT j.id
FROM jobkit_jobs AS j
WHERE j.id IN (SELECT p.child_id
               FROM jobkit_job_parents AS p JOIN jobkit_job_links AS l ON l.job_id = p.child_id
               WHERE p.parent_id = %(job_id)s AND l.cascaded = 1)
    AND j.status = 'cancelled'
ORDER BY j.id
FOR UPDATE OF j;

-- name: lock_parents
-- the parents of a job a manual retry makes wait again, FOR SHARE in id order before its
-- verdict is read: a parent ending meanwhile commits first (and the verdict sees its end) or
-- waits for the retry (and its end finds the job blocked); else it could end unseen
SELECT id FROM jobkit_jobs
WHERE id IN (SELECT parent_id FROM jobkit_job_parents WHERE child_id = %(job_id)s)
ORDER BY id
FOR SHARE;

-- name: revive_cascaded
UPDATE jobkit_jobs
SET status = 'blocked', finished_at = NULL, error = NULL
WHERE id = %(job_id)s AND status = 'cancelled'
RETURNING *;

-- name: retry_blocked
-- a manual retry of a step whose parents have not all completed: it waits again
UPDATE jobkit_jobs SET status = 'blocked' WHERE id = %(job_id)s AND status = 'pending'
RETURNING *;

-- name: workflow
SELECT created_at FROM jobkit_workflows WHERE id = %(workflow_id)s;

-- name: workflow_steps
SELECT l.job_id, l.label, l.needs, l.result_as, j.name, j.method, j.status
FROM jobkit_job_links AS l JOIN jobkit_jobs AS j ON j.id = l.job_id
WHERE l.workflow_id = %(workflow_id)s
ORDER BY l.job_id;

-- name: workflow_parents
SELECT p.child_id, p.parent_id
FROM jobkit_job_parents AS p JOIN jobkit_job_links AS l ON l.job_id = p.child_id
WHERE l.workflow_id = %(workflow_id)s
ORDER BY p.child_id, p.position;

-- name: workflow_unended
SELECT j.id
FROM jobkit_job_links AS l JOIN jobkit_jobs AS j ON j.id = l.job_id
WHERE l.workflow_id = %(workflow_id)s
    AND j.status IN ('pending', 'retrying', 'running', 'blocked')
ORDER BY j.id;
