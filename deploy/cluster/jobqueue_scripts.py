"""Print the batch job scripts that start grading workers on a SLURM or HTCondor cluster (dask-jobqueue).

    python deploy/cluster/jobqueue_scripts.py slurm --account myacct --queue cpu
    python deploy/cluster/jobqueue_scripts.py htcondor

Each job starts one Dask worker with one thread (one learner at a time, each in its own sandbox) that
connects back to the scheduler the coordinator runs; workers must run as root (the full sandbox) or
where user namespaces are allowed, and reach the scheduler over TLS (README "Grading on many machines").
In a Python session on the coordinator, the same cluster object grades a class directly:

    cluster = SLURMCluster(**settings); cluster.scale(jobs=8)
    course autograde CHAPTER --cluster <cluster.scheduler_address>
"""
from __future__ import annotations

import argparse

# One grading process per job, one learner at a time (one thread), with room for the torch chapters.
WORKER = {"cores": 1, "processes": 1, "memory": "8GB", "walltime": "02:00:00"}


def job_script(kind: str, **extra) -> str:
    """The job script dask-jobqueue would submit for one grading worker (no jobs are submitted)."""
    from dask_jobqueue import HTCondorCluster, SLURMCluster

    make = {"slurm": SLURMCluster, "htcondor": HTCondorCluster}[kind]
    options = dict(WORKER, **{k: v for k, v in extra.items() if v is not None})
    if kind == "htcondor":                     # HTCondor asks for disk and has no wall time
        options.pop("walltime", None)
        options.setdefault("disk", "4GB")
    cluster = make(scheduler_options={"host": "127.0.0.1", "dashboard_address": None}, **options)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["slurm", "htcondor"])
    parser.add_argument("--account")
    parser.add_argument("--queue")
    args = parser.parse_args(argv)
    print(job_script(args.kind, account=args.account, queue=args.queue))


if __name__ == "__main__":
    main()
