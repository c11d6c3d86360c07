"""An ``/execute/`` config as the server judges it, checked before sending; its answer's codes."""

from __future__ import annotations

import enum
import json

__all__ = ["SandboxErrCode", "validate"]


class SandboxErrCode(enum.IntEnum):
    """Negative ``status`` values of an ``/execute/`` answer."""

    UNKNOWN = -1
    TIMEOUT = -2
    RESULT_NOT_FOUND = -3
    RESULT_NOT_UTF8 = -4


def _command_is_valid(command: object) -> bool:
    if isinstance(command, str):
        return True
    # Anything but these two keys makes the server fail with a 500. It tests
    # isinstance(timeout, (int, float)), which lets true/false through.
    return (
        isinstance(command, dict)
        and not set(command) - {"command", "timeout"}
        and isinstance(command.get("command"), str)
        and isinstance(command.get("timeout", 0), (int, float))
    )


def validate(config: object) -> tuple[bool, str]:
    """Check an ``/execute/`` config the way the server does, without sending it.

    Returns ``(True, "")`` or ``(False, message)`` with the server's own
    message for the first problem (3.x wording). Whether a referenced
    ``environment`` exists can only be known by the server.
    """
    try:
        # The server sees the JSON text: check what survives the round trip
        # (tuples become lists, keys become strings).
        config = json.loads(json.dumps(config))
    except (TypeError, ValueError) as error:
        return False, f"config is not JSON serializable: {error}"
    if not isinstance(config, dict):
        return False, f"config must be an object, not {type(config)}"
    if "commands" not in config:
        return False, "Missing field 'commands' in config"
    commands = config["commands"]
    if not isinstance(commands, list):
        return False, f"commands must be a list, not {type(commands)}"
    if "environ" in config and not isinstance(config["environ"], dict):
        return False, f"environ must be an object, not {type(config['environ'])}"
    if not commands:
        return False, "Command list cannot be empty"
    for command in commands:
        if not _command_is_valid(command):
            return False, f"Command badly formatted : '{command}'"
    if "result_path" in config and not isinstance(config["result_path"], str):
        return False, f"result_path must be a string, not {type(config['result_path'])}"
    if "save" in config and not isinstance(config["save"], bool):
        return False, f"save must be a boolean, not {type(config['save'])}"
    return True, ""
