"""One registry type for every name a user picks (stage, backbone, head, loss, filter, ...), as timm's `register_model`:
a dict whose unknown name is a KitError listing the valid ones; old names live on as hidden aliases."""
from __future__ import annotations

import sys

from kit.errors import KitError


def deprecated(old: str, new: str) -> None:
    """The one line an old name (flag, recipe key, registry name) prints before it works as the new one."""
    print(f"kit: {old} is deprecated, use {new}", file=sys.stderr)


class Registry(dict):
    """name -> entry, for the choices of one kind (`kind` names it in errors: "unknown head 'x'")."""

    def __init__(self, kind: str, entries: dict | None = None, aliases: dict | None = None):
        super().__init__(entries or {})
        self.kind, self.aliases = kind, aliases or {}   # old name -> new name: found, but not listed

    def __contains__(self, name) -> bool:
        return super().__contains__(name) or name in self.aliases

    def register(self, name: str, obj):
        """Add `obj` under `name`; a name registered twice is an error."""
        if name in self:
            raise KitError(f"{self.kind} '{name}' is registered twice")
        self[name] = obj

    def __missing__(self, name):
        return self[self.aliases[self.check(name)]]

    def names(self) -> list[str]:
        return list(self)

    def check(self, name: str, where: str = "") -> str:
        """`name` if registered, else the one error (prefixed with `where`, e.g. the file and key)."""
        if name not in self:
            raise KitError(f"{where}unknown {self.kind} '{name}' (valid: {', '.join(self.names())})")
        return name
