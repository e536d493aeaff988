"""Turning pydantic's validation errors into lines that name the field as the user wrote it.

Every config and spec in oasis-ray is refused the same way: one line per
problem, `routes[1].engine.max_num_seqs: <what is wrong>`, so an operator finds
the bad key without reading a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

# A validator that names its own field ("max_num_seqs: ...", or a nested one, "resources.cpus: ...") is joined
# onto the path.
NAMES_ITS_FIELD = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])*(?:\.[A-Za-z_]\w*(?:\[\d+\])*)*): ")


def field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def error_lines(exc: ValidationError, path_of: Callable[[tuple[Any, ...]], str] = field_path) -> list[str]:
    """One line per problem; a validator may report several problems, one a line, each naming its field."""
    lines = []
    for err in exc.errors():
        where = path_of(err["loc"])
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        for part in message.splitlines():
            own_field = NAMES_ITS_FIELD.match(part)
            if where and own_field:
                lines.append(f"{where}.{own_field.group(1)}: {part[own_field.end():]}")
            else:
                lines.append(f"{where}: {part}" if where else part)
    return lines
