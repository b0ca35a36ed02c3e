"""Components of the localdev stack: registry caches, push registry, kind cluster and their wiring."""
