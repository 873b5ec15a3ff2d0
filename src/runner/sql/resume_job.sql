-- Resumes job $1.
DELETE FROM job_pauses WHERE "jobType" = $1
