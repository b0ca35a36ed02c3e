"""Cache operations behind ``localdev``: ``status``, ``stats`` and ``warm``.

Modules:

* :mod:`~localdev.images`: image references and the images named by ``k8s/*.yaml``.
* :mod:`~localdev.ops.registry_api`: an OCI distribution client (httpx), with bearer-token auth.
* :mod:`~localdev.ops.storage`: what a registry holds, read from its storage (a directory or a
  container's volume through the Docker API) rather than its HTTP API.
* :mod:`~localdev.ops.metrics`: a registry's proxy counters (Prometheus on 3.x, expvar on 2.8).
* :mod:`~localdev.ops.status`, :mod:`~localdev.ops.stats`, :mod:`~localdev.ops.warm`: the commands.

Every expected failure is an :class:`~localdev.errors.OpsError` carrying a one-line message
and an exit code; the CLI prints it and never a traceback.
"""
