"""The HTTP surface: the route table, request parsing, problem+json rendering, OpenAPI."""
