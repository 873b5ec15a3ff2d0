-- The run $1 took the lock: its interval starts now, not when its id was reserved, so that the
-- rows of runs that never overlapped never look as if they did.
UPDATE job_runs SET "startedAt" = timezone('UTC', now()) WHERE id = $1
