"""Making a batch's jobs on a Ray cluster: one actor per GPU, or per group of CPU threads.

Each actor is a :class:`~generator.batch.work.Worker`: it loads the models once and makes
the groups of jobs it is given, one group at a time, and sends the results back; the driver
writes every file (the machines need no shared disk). A group whose actor dies (a crash,
a killed process, a lost machine) goes back to the queue and is made again by the next free
actor (the dead one is restarted by Ray); the driver writes each job once.

Ray is optional (``pip install .[ray]``); it is imported only when this module is used.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from generator.batch.jobs import Job
from generator.batch.work import JobFailed, JobResult, PipelineFactory, Worker, bare_state
from generator.devices import choose_threads
from generator.errors import ConfigError, summary

logger = logging.getLogger(__name__)

DEFAULT_THREADS = 4
"""CPU threads per actor where the cluster has no GPU."""
MAX_ATTEMPTS = 3
"""How many times a job is started before a dying worker counts as its failure."""
ACTOR_RESTARTS = 2
"""How many times Ray restarts a dead actor before it is given up."""
LOCAL = "local"

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])  # holds the generator package in a checkout


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ConfigError: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray, which is not installed; install it with `pip install .[ray]` "
                          "(or `pip install -r requirements-ray.txt`).") from None
    return ray


def connect(address: str | None) -> bool:
    """Start Ray on this machine (``address`` None or ``local``) or join the cluster at
    ``address``, unless Ray is already initialised in this process; True when it was started
    or joined here (and is to be shut down by whoever called this).

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be joined.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address in (None, LOCAL):
        ray.init(include_dashboard=False, log_to_driver=False)
    else:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ConfigError(f"cannot join the Ray cluster at {address} ({summary(error)}); start it with "
                              "`ray start --head` and pass the address it prints.") from None
    return True


def plan_actors(ray: Any, address: str | None, *, workers: int | None = None,
                threads: int | None = None) -> tuple[int, dict[str, Any], int | None]:
    """How many actors the cluster has room for and their Ray options: one per GPU, else one per
    ``threads`` CPUs (default :data:`DEFAULT_THREADS`, and on a Ray started here no more than
    each actor's share of the cores other processes leave free); at most ``workers``.

    Returns:
        (actors, options for ``.options(...)``, CPU threads per actor or None on GPUs).
    """
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    explicit = threads
    if gpus:
        count, options, threads = gpus, {"num_gpus": 1, "num_cpus": 1}, None
    else:
        threads = max(1, min(threads or DEFAULT_THREADS, cpus))
        count, options = max(1, cpus // threads), {"num_cpus": threads}
    if workers:
        if workers > count:
            logger.warning("the cluster has room for %d workers, not %d; using %d", count, workers, count)
        count = min(count, workers)
    if threads and not explicit and address in (None, LOCAL):  # every actor shares this machine's free cores
        threads = min(threads, choose_threads(None, workers=count))
    path = os.pathsep.join(filter(None, [_PROJECT_ROOT, os.environ.get("PYTHONPATH")]))
    options["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
    return count, options, threads


class RayExecutor:
    """Makes groups of jobs on Ray actors and yields their results as they finish.

    Args:
        address: ``local`` (or None) to start Ray on this machine, or the address of a
            running cluster (``ray start --head`` prints it). A Ray already initialised in
            this process is used as it is.
        make_pipeline: builds each actor's pipeline; must be importable by the workers
            (a module-level function). Default: ``TextToImage.from_workbench``.
        device, weights_dir, offline: passed to ``make_pipeline`` on each actor.
        workers: at most this many actors (default: one per GPU, else one per ``threads`` CPUs).
        threads: CPU threads per actor on a cluster without GPUs (default: 4, and on a Ray started
            here no more than each actor's share of the cores other processes leave free).
        on_submit: called with ``(actor pid, job ids)`` when a group is handed to an actor.
    """

    def __init__(self, address: str | None = None, make_pipeline: PipelineFactory | None = None, *,
                 device: str = "auto", weights_dir: str | None = None, offline: bool | None = None,
                 workers: int | None = None, threads: int | None = None,
                 on_submit: Callable[[int, list[str]], None] | None = None):
        self.ray = ray = import_ray()
        self._started = connect(address)
        count, options, threads = plan_actors(ray, address, workers=workers, threads=threads)
        remote = ray.remote(max_restarts=ACTOR_RESTARTS, max_task_retries=0)(Worker)
        self.actors = [remote.options(**options).remote(make_pipeline, device=device, weights_dir=weights_dir,
                                                        offline=offline, threads=threads) for _ in range(count)]
        self.pids: dict[int, int] = dict(enumerate(ray.get([actor.pid.remote() for actor in self.actors])))
        self.threads = threads
        self.on_submit = on_submit
        each = (f"{threads} CPU thread{'s' if threads != 1 else ''} each" if threads else "one GPU each")
        logger.info("%d Ray worker%s (%s)", count, "s" if count != 1 else "", each)

    def results(self, groups: Sequence[Sequence[Job]]) -> Iterator[JobResult]:
        """Yield each job's result as its group finishes; groups of dead actors are made again."""
        ray = self.ray
        from ray.exceptions import RayActorError, RayError

        queue = collections.deque((list(group), 1) for group in groups)
        idle = list(range(len(self.actors)))
        in_flight: dict[Any, tuple[int, list[Job], int]] = {}
        recovering: dict[Any, int] = {}  # a call that returns once a dead actor has been restarted
        try:
            while queue or in_flight:
                while queue and idle:
                    index = idle.pop(0)
                    group, attempts = queue.popleft()
                    in_flight[self.actors[index].run.remote(group)] = (index, group, attempts)
                    if self.on_submit is not None:
                        self.on_submit(self.pids.get(index, 0), [job.id for job in group])
                if not in_flight and not recovering:  # every actor is gone
                    for group, attempts in queue:
                        yield from _failed(group, attempts, "every Ray worker died; check the workers' logs "
                                                            "(`ray logs`) and run the batch again to make the rest.")
                    return
                (ref,), _ = ray.wait([*in_flight, *recovering], num_returns=1)
                if ref in recovering:
                    index = recovering.pop(ref)
                    try:
                        self.pids[index] = ray.get(ref)
                        idle.append(index)
                    except RayActorError:
                        logger.warning("a Ray worker could not be restarted; going on with the others")
                    continue
                index, group, attempts = in_flight.pop(ref)
                try:
                    results = ray.get(ref)
                except RayActorError as error:
                    logger.warning("a Ray worker died while making %s (%s); %s", ", ".join(j.id for j in group),
                                   summary(error), "trying again" if attempts < MAX_ATTEMPTS else "giving up")
                    if attempts < MAX_ATTEMPTS:
                        queue.appendleft((group, attempts + 1))
                    else:
                        yield from _failed(group, attempts, f"its Ray worker died {attempts} times while making it "
                                                            "(out of memory?); run it alone to see why.")
                    # Ray restarts the actor (up to ACTOR_RESTARTS times); this call waits for that
                    recovering[self.actors[index].pid.options(max_task_retries=-1).remote()] = index
                    continue
                except RayError as error:  # not a job's failure (those come back as results): a bug or a transport
                    idle.append(index)
                    yield from _failed(group, attempts, f"the Ray worker could not make it ({summary(error)}); "
                                                        "run it alone to see why.")
                    continue
                idle.append(index)
                for result in results:
                    result.attempts = attempts
                    yield result
        finally:
            for ref in in_flight:
                try:
                    ray.cancel(ref)
                except Exception as error:  # noqa: BLE001 - best effort while stopping
                    logger.debug("could not cancel a Ray task: %s", error)

    def close(self) -> None:
        """Stop the actors (and the local Ray this executor started)."""
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception as error:  # noqa: BLE001 - best effort while shutting down
                logger.debug("could not stop a Ray worker: %s", error)
        self.actors = []
        if self._started:
            self.ray.shutdown()
            self._started = False


def _failed(group: Sequence[Job], attempts: int, message: str) -> Iterator[JobResult]:
    for job in group:
        yield JobResult(job.id, bare_state(job.config), error=JobFailed(message), attempts=attempts)
