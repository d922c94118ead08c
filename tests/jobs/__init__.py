"""Training jobs that tests launch as subprocesses (and SIGKILL), one module a job.

Run one as a module with tests/ on the path (what `helpers.run_job` and the tests' launchers do,
through `helpers.job_env`), so that it imports `helpers` and `jobs.builder` as the tests do:

    PYTHONPATH=tests python -m jobs.resume OUTPUT_DIR --kill-step 5
    PYTHONPATH=tests python -m torch.distributed.run --nproc_per_node 2 -m jobs.distributed OUTPUT_DIR

Options are command-line arguments (`--help` lists them); `jobs.builder` holds what the jobs share.
"""
