"""The Deployment controller (see controller.py; the rules are in util.py,
status.py and rollout.py)."""

from timonel.controller.deployment.controller import run

__all__ = ["run"]
