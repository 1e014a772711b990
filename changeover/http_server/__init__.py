"""The small HTTP/1.1 server under the control API and the operator's OFREP endpoint.

``http`` (the protocol: parsing, keep-alive, limits), ``dispatch`` (method + path → handler,
with auth and error mapping), ``sessions`` (the dashboard's cookie sessions and CSRF tokens).
Below both ``changeover.api`` and ``changeover.operator``, which must not import each other.
"""
