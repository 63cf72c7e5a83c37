"""The four services. This package is the composition root: `services.registry` and
`services.cli` know every service; no service imports another."""
