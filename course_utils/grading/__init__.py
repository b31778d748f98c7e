"""Grading a class's exercise notebooks with papermill: see `course_utils.grade` for the command.

Modules: `submissions` (finding and reading the notebooks handed in), `isolation` (each student's
bubblewrap sandbox, entered by processes forked warm), `sandbox` (limits, user, network and audit
hook around student code), `processes` (ending everything a submission
started), `worker` (one student: run the notebook, then the checks), `checker` (the checks, in a
process the student's kernel never touched), `replay` and `state` (the trust boundary: student
code runs in a child that records each call as plain data; the checker judges the recording and
never runs student code), `warmup` (torch's first-use costs paid once in the fork server),
`kernel` (the student's kernel forked from the warm worker, not started cold), `guard` (course
files restored if a submission changes them), `feedback` (the per-student report), `usage` (the hints,
revealed answers and multiple-choice tries a hand-in recorded, and the instructor's penalties). After grading
(`instructor`): `stats` (item analysis), `exports` (Gradescope, Canvas, HTML feedback), `late`
(late policy), `written` (written answers to read and score), `similarity` (near-identical answer
pairs), `shards` (one slice of the class per machine, and merging), `tables` (reading the gradebook
and results back). `deploy/` holds the container, Kubernetes, Slurm and Gradescope recipes.
"""
