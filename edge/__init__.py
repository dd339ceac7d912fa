"""The per-line edge daemon: wiring, context, follow-up rules, status page, CLI, systemd notify."""
