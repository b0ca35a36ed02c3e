"""Cache operations behind ``python -m components.cli``: ``status``, ``stats`` and ``warm``.

Modules:

* :mod:`~components.ops.images`: image references and the images named by ``k8s/*.yaml``.
* :mod:`~components.ops.registry_api`: an OCI distribution client (httpx), with bearer-token auth.
* :mod:`~components.ops.storage`: what a registry holds, read from its storage (a directory or a
  container's volume through the Docker API) rather than its HTTP API.
* :mod:`~components.ops.metrics`: a registry's proxy counters (Prometheus on 3.x, expvar on 2.8).
* :mod:`~components.ops.status`, :mod:`~components.ops.stats`, :mod:`~components.ops.warm`: the commands.

Every expected failure is an :class:`~components.ops.errors.OpsError` carrying a one-line message
and an exit code; the CLI prints it and never a traceback.
"""
