"""Pull benchmark of the localdev registry caches (issue 6): ``python -m bench [--quick]``.

Real binaries on loopback only: a plain ``docker-registry`` stands in for Docker
Hub behind a relay that models the internet link, a ``docker-registry`` in proxy
mode configured with the product's ``render_cache_env``, and containerd nodes
pulling with ``ctr`` through the product's ``render_node_hosts`` files.
See bench/README.md.
"""
