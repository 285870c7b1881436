"""What every API request goes through: middleware, the error responses, throttles,
parsers and renderers, input validation, conditional GETs, the OpenAPI schema and
its docs page; and the admin's paginator."""
