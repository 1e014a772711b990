"""The data plane in processes of its own: routers that outlive ``changeover serve``.

``remote.RemoteRouter`` is the ``TrafficRouter`` ``serve`` drives; ``host`` is the router
process it starts (or adopts after a restart); ``codec`` is what they say to each other over
a Unix socket; ``records`` where their files live; ``down`` stops everything a state dir runs.
"""
