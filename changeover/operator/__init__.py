"""changeover.operator: ``changeover serve --platform kubernetes``.

The same engine as the local controller, driven from Kubernetes objects: ``runtime``
(informers, the work queue, leader election, the run loop), ``reconcile`` (one rollout:
observe ReplicaSets → ``engine.plan`` → act → write ``status``), ``executor`` (actions on
ReplicaSets, Jobs and the router), ``leader`` (a coordination.k8s.io Lease), ``documents``
(the Rollout's status fields and the CLI's status document), ``service`` (the user
operations the CLI performs on Rollout resources) and ``workqueue``.
"""
