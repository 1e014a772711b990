"""The operator process: informers, a work queue, reconcile workers and leader election.

    op = Operator(client, namespace=None)         # None: every namespace
    await op.run()                                 # until cancelled or the lease is lost

Watches (Rollouts; ReplicaSets and hook Jobs labelled ``changeover.dev/rollout``; Flags,
whose ``spec.rollout`` ``operator.flag_rollouts`` walks) fill caches and queue the
rollout a change belongs to; ``workers`` coroutines reconcile queued
rollouts, one rollout at a time per key; each reconcile says when the clock alone would
change its plan (a timed pause, a scale-down delay) and the queue looks again then. Only
the leader (``operator.leader``) starts informers and workers; losing the lease stops
them, so a replica that cannot renew never acts beside the new leader. A clean stop
(cancelled) lets the looks in progress finish, a few seconds at most, before it releases
the lease; a lost lease stops them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from changeover import aio, errors
from changeover.kube import client as kube
from changeover.kube import names
from changeover.operator import argo_bridge, flag_rollouts, health_server
from changeover.operator import reconcile as reconcile_mod
from changeover.operator.flag_endpoint import FlagEndpoint
from changeover.operator.flag_rollouts import FlagRollouts
from changeover.operator.leader import LeaderElector
from changeover.operator.operator_analysis import OperatorAnalysis
from changeover.operator.trace import SpecTrace
from changeover.operator.workqueue import WorkQueue
from changeover.platforms.kubernetes import informer, replicasets
from changeover.platforms.kubernetes.events import EventRecorder
from changeover.platforms.kubernetes.hooks import JobHooks
from changeover.platforms.kubernetes.replicasets import KubePlatform

log = logging.getLogger(__name__)
JSON = dict[str, Any]
Key = tuple[str, str]
DRAIN_SECONDS = 5.0


class Operator:
    def __init__(
        self,
        client: kube.KubeClient,
        *,
        namespace: str | None = None,
        workers: int = 64,
        identity: str | None = None,
        lease_namespace: str | None = None,
        leader_election: bool = True,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = 15.0,
        state_dir: Path | None = None,
        argo_rollouts: bool = False,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.workers = workers
        self.clock = clock
        self.identity = (
            identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        )
        self.queue: WorkQueue[Key] = WorkQueue()
        self.rollouts = informer.Informer(
            client,
            kube.ROLLOUTS,
            namespace=namespace,
            on_change=self._rollout_changed,
            on_delete=self._rollout_deleted,
        )
        self.replicasets = informer.Informer(
            client,
            kube.REPLICASETS,
            namespace=namespace,
            label_selector=names.ROLLOUT_LABEL,
            on_change=self._owned_changed,
            index=replicasets.by_rollout,
        )
        self.jobs = informer.Informer(
            client,
            kube.JOBS,
            namespace=namespace,
            label_selector=names.HOOK_LABEL,
            on_change=self._owned_changed,
        )
        self.platform = KubePlatform(client, self.replicasets)
        self.hooks = JobHooks(client, self.jobs)
        self.recorder = EventRecorder(client, instance=self.identity)
        self.analysis = OperatorAnalysis(
            client,
            namespace=namespace,
            state_dir=state_dir,
            wake=self._wake_measured,
            argo_rollouts=argo_rollouts,
        )
        self.trace = SpecTrace()
        # Flags' progressive rollouts, walked beside the Rollouts (``operator.flag_rollouts``).
        self.flag_rollouts = FlagRollouts(
            client,
            namespace=namespace,
            rollouts=self.rollouts,
            platform=self.platform,
            analysis=self.analysis,
            recorder=self.recorder,
            clock=clock,
            enqueue=self.queue.add,
        )
        # What each reconcile may use (``operator.reconcile``), and nothing else of ours.
        self.deps = reconcile_mod.ReconcileDeps(
            client=client,
            rollouts=self.rollouts,
            platform=self.platform,
            hooks=self.hooks,
            analysis=self.analysis,
            recorder=self.recorder,
            trace=self.trace,
            clock=clock,
        )
        self.stats = self.deps.stats
        self.errors: dict[Key, str] = {}
        # How long a clean stop waits for the looks in progress: well inside the lease, so
        # no other replica can lead meanwhile.
        self._drain_seconds = min(DRAIN_SECONDS, lease_seconds / 3)
        self.elector = (
            LeaderElector(
                client,
                namespace=lease_namespace or namespace or client.namespace,
                identity=self.identity,
                lease_seconds=lease_seconds,
                renew_deadline=lease_seconds * 2 / 3,
                retry_period=max(0.2, lease_seconds / 7.5),
            )
            if leader_election
            else None
        )
        # Argo Rollouts' own resources, converted into ours (``operator.argo_bridge``).
        self.argo = (
            argo_bridge.ArgoBridge(
                client,
                namespace=namespace,
                rollouts=self.rollouts,
                platform=self.platform,
                recorder=self.recorder,
                enqueue=self.queue.add,
            )
            if argo_rollouts
            else None
        )
        self.ready = asyncio.Event()
        # Called with (namespace, name, seconds) after each reconcile (the scale bench).
        self.on_reconciled: Callable[[str, str, float], None] | None = None

    # --- informer callbacks ----------------------------------------------------------

    def _rollout_changed(self, obj: JSON) -> None:
        meta, status = obj.get("metadata", {}), obj.get("status") or {}
        # A spec the operator has not acted on yet jumps the queue.
        urgent = meta.get("generation") != status.get("observedGeneration")
        key = informer.key_of(obj)
        if urgent:
            self.trace.received(key, int(meta.get("generation") or 0))
        self.queue.add(key, urgent=urgent)
        if self.argo is not None and argo_bridge.SOURCE_ANNOTATION in (
            meta.get("annotations") or {}
        ):
            # The Argo Rollout it was converted from shows its status.
            self.queue.add(("argo", f"{key[0]}/{key[1]}"))

    def _rollout_deleted(self, obj: JSON) -> None:
        key = informer.key_of(obj)
        self.deps.forget(key)
        self.errors.pop(key, None)
        self.queue.add(key)  # its reconcile releases the Services it adopted

    def _wake_measured(self) -> None:
        """A measurement or a webhook finished: look at the rollouts waiting on one."""
        for obj in self.rollouts.items():
            status = obj.get("status") or {}
            if status.get("analysisRuns") or status.get("webhooks"):
                self.queue.add(informer.key_of(obj))
        self.flag_rollouts.wake_running()

    def _owned_changed(self, obj: JSON) -> None:
        meta = obj.get("metadata", {})
        owner = (meta.get("labels") or {}).get(names.ROLLOUT_LABEL)
        if owner:
            self.queue.add((str(meta.get("namespace", "")), owner))

    def view(self) -> health_server.OperatorView:
        """What ``/healthz``, ``/readyz`` and ``/metrics`` show of this operator."""
        return health_server.OperatorView(
            leading=lambda: self.elector is None or self.elector.is_leader,
            ready=self.ready.is_set,
            counters=lambda: {
                "reconciles": self.stats.reconciles,
                "actions": self.stats.actions,
                "reconcile_errors": self.stats.errors,
            },
            queue_depth=lambda: len(self.queue),
            rollouts=self.rollouts.items,
        )

    # --- running ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled; return if leadership is lost (the process should exit)."""
        if self.elector is not None:
            await self.elector.acquire()
        informers: tuple[informer.Informer, ...] = (
            self.analysis.templates,
            self.replicasets,
            self.jobs,
            self.rollouts,
            self.flag_rollouts.informer,
        )
        # Cluster-wide templates are not waited for: a namespaced operator may not be
        # allowed to list them, and must still start.
        waited = informers
        if self.argo is not None:
            namespaced, *cluster = self.analysis.argo_templates
            waited = (*informers, namespaced, self.argo.informer)
            informers = (*waited, *cluster)
        tasks = [
            asyncio.create_task(inf.run(), name=f"informer-{inf.resource.plural}")
            for inf in informers
        ]
        tasks.append(asyncio.create_task(self.analysis.run(), name="analysis"))
        tasks.append(asyncio.create_task(self.recorder.run(), name="events"))
        try:
            for inf in waited:
                await inf.synced.wait()
            tasks += [
                asyncio.create_task(self._worker(), name=f"worker-{i}") for i in range(self.workers)
            ]
            self.ready.set()
            if self.elector is not None:
                await self.elector.keep()
            else:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            # A clean stop (SIGTERM, a rolling update): the lease is still ours, so the looks
            # in progress finish their writes and events before it goes. Cut short, the next
            # leader would do them again (measure an analysis step that had passed).
            self.ready.clear()
            self.queue.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.drained(), self._drain_seconds)
            raise
        finally:
            self.ready.clear()
            self.queue.close()
            await self.recorder.flush()
            await informer.stop(tasks)
            await self.analysis.close()
            if self.elector is not None:
                with contextlib.suppress(errors.ChangeoverError):
                    await self.elector.release()

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            started = time.perf_counter()
            if self.trace.pending(key):
                self.trace.mark(key, "queued", at=self.queue.enqueued_at(key))
                self.trace.mark(key, "dequeued")
            try:
                if key[0] == "argo" and self.argo is not None:
                    await self.argo.sync(*key[1].split("/", 1))
                    again = None
                elif key[0] == flag_rollouts.QUEUE_PREFIX:
                    again = await self.flag_rollouts.sync(*key[1].split("/", 1))
                else:
                    again = await reconcile_mod.reconcile(self.deps, *key)
                self.errors.pop(key, None)
            except kube.Conflict:
                # The cache is behind a user's write (or the watch lags): read the rollout
                # itself, so the next look plans from it instead of conflicting again.
                again = await self._refresh(key)
            except errors.ChangeoverError as exc:
                again = await self._failed(
                    key, str(exc), transient=isinstance(exc, errors.TemporaryBackendError)
                )
            except Exception as exc:
                log.exception("reconcile of %s/%s failed", *key)
                again = await self._failed(key, f"internal error: {exc}", transient=True)
            finally:
                self.queue.done(key)
            if self.on_reconciled is not None:
                self.on_reconciled(key[0], key[1], time.perf_counter() - started)
            if again is not None:
                self.queue.add_after(key, again)
            # A reconcile that needed no API request never yielded, and neither does
            # taking the next key from a non-empty queue: without this, one worker could
            # plan hundreds of keys in a row while watch events and replies wait.
            await asyncio.sleep(0)

    async def _refresh(self, key: Key) -> float:
        if key[0] in ("argo", flag_rollouts.QUEUE_PREFIX):
            return 0.5
        try:
            fresh = await self.client.get_or_none(kube.ROLLOUTS, key[1], namespace=key[0])
        except errors.ChangeoverError:
            return 1.0
        if fresh is not None:
            fresh.setdefault("apiVersion", kube.ROLLOUTS.api_version)
            fresh.setdefault("kind", kube.ROLLOUTS.kind)
            self.rollouts.remember(fresh)
        return 0.0

    async def _failed(self, key: Key, message: str, *, transient: bool) -> float:
        self.stats.errors += 1
        if self.errors.get(key) != message:
            self.errors[key] = message
            log.warning("reconcile of %s/%s: %s", key[0], key[1], message)
            obj = self.rollouts.get(*key)
            if obj is not None:
                await self.recorder.record(obj, "ReconcileError", message)
        return 1.0 if transient else 10.0


def run_serve(**kwargs: Any) -> int:
    """``serve`` on uvloop when it is installed (as the local server runs): the operator's
    time goes into sockets, TLS and JSON, which uvloop's transports make cheaper."""
    return aio.run_fast(serve(**kwargs))


async def serve(
    *,
    kubeconfig: str | None,
    namespace: str | None,
    lease_namespace: str | None,
    workers: int = 64,
    argo_rollouts: bool = False,
    on_ready: Callable[[Operator], None] | None = None,
    metrics_bind: tuple[str, int] | None = ("127.0.0.1", 8090),
) -> int:
    """``changeover serve --platform kubernetes``: run until SIGINT/SIGTERM (exit 0) or
    until the lease is lost (exit 1, so the Deployment restarts the replica).
    ``metrics_bind`` is where ``/healthz``, ``/readyz`` and ``/metrics`` are served
    (``operator.health_server``); None serves none."""
    # A connection per worker, plus the watches, event writers and the lease.
    client = await kube.KubeClient.connect(kubeconfig_path=kubeconfig, connections=workers + 16)
    op = Operator(
        client,
        namespace=namespace,
        lease_namespace=lease_namespace,
        workers=workers,
        argo_rollouts=argo_rollouts,
    )
    server = None
    if metrics_bind is not None:
        server = health_server.HealthServer(op.view(), *metrics_bind)
        try:
            await server.start()
        except OSError as exc:
            await client.close()
            raise errors.PermanentBackendError(
                f"--metrics-bind {metrics_bind[0]}:{metrics_bind[1]}: cannot listen ({exc})"
            ) from None
    stop = aio.stop_on_signals()
    try:
        flags = await _flag_endpoint(client, namespace)
    except errors.ChangeoverError:
        if server is not None:
            await server.close()
        await client.close()
        raise
    task = asyncio.create_task(op.run())
    if on_ready is not None:
        ready = asyncio.create_task(op.ready.wait())
        await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        if op.ready.is_set():
            on_ready(op)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({stopper, task}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if task.done():
        code = 1
        with contextlib.suppress(Exception):
            task.result()
    else:
        await aio.cancel_and_wait(task)
    stopper.cancel()
    if server is not None:
        await server.close()
    if flags is not None:
        await flags.close()
    await client.close()
    return code


async def _flag_endpoint(client: kube.KubeClient, namespace: str | None) -> FlagEndpoint | None:
    """OFREP from Flag resources when ``CHANGEOVER_OFREP_LISTEN`` (host:port) is set; the
    token clients present is ``CHANGEOVER_FLAGS_TOKEN`` (mount it from a Secret)."""
    listen = os.environ.get("CHANGEOVER_OFREP_LISTEN", "")
    if not listen:
        return None
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise errors.PermanentBackendError(
            f"CHANGEOVER_OFREP_LISTEN: expected host:port, got {listen[:100]!r}"
        )
    endpoint = FlagEndpoint(
        client, namespace=namespace, token=os.environ.get("CHANGEOVER_FLAGS_TOKEN", "")
    )
    await endpoint.start(host or "127.0.0.1", int(port))
    log.info("OFREP for Flag resources on %s", listen)
    return endpoint
