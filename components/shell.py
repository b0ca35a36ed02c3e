"""A local Command that runs one of localdev's shell scripts (:class:`localdev.render.ShellCommand`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_command as command

from localdev.render import ShellCommand


def shell_command(
    name: str, shell: ShellCommand, *, triggers: Sequence[pulumi.Input[Any]], opts: pulumi.ResourceOptions, **extra: Any
) -> command.local.Command:
    """The Command's inputs are the script's text and parameters, so a preview shows exactly what will run.

    pulumi-command runs ``create`` again when an input changes and replaces the
    resource when a ``triggers`` value changes.
    """
    return command.local.Command(
        name,
        create=shell.create,
        delete=shell.delete,
        environment=shell.environment,
        stdin=shell.stdin,
        triggers=list(triggers),
        opts=opts,
        **extra,
    )
