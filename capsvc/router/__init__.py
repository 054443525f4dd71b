"""The router: the public HTTP entry point of a host. It proxies pool and reservation requests
to the owning worker and answers the availability grid from its own read model."""
