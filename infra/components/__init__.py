"""One ComponentResource per concern; `infra/__main__.py` wires them together."""
