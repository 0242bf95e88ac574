"""What a reload changes: the old config against the new, component by component.

A pure comparison, so the daemon's reload (SIGHUP, ``bitcoin-supervisor reload``,
systemd's ``ExecReload=``) is one decision made up front: everything that can be refused
is refused before any component is touched, and the old config keeps running.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitcoin_supervisor.interfaces import ConfigError

from ._config import ComponentConfig, Config

__all__ = ["ReloadPlan", "plan_reload"]


@dataclass(frozen=True)
class ReloadPlan:
    """Component names by what a reload does to them. ``added``, ``changed`` and
    ``unchanged`` are in the new config's dependency order, ``removed`` in the old one's."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]

    @property
    def empty(self) -> bool:
        """True when the reload leaves every component as it is."""
        return not (self.added or self.removed or self.changed)


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Compare two validated configs. A component is *changed* when its own settings
    differ, when the global ``debug`` list differs, or when the datadir of a component
    it depends on moved (its sandbox view names that datadir); a changed component is
    restarted, an unchanged one keeps its process.

    Raises ConfigError (pointing at the new file) for what a running daemon cannot
    apply: another datadir or another control group (the control socket lives there).
    """
    if new.datadir != old.datadir:
        raise ConfigError(f"[supervisor] datadir changed from {old.datadir} to "
                          f"{new.datadir}: a reload cannot move the running daemon",
                          path=str(new.path),
                          hint="restart the daemon to use another datadir")
    if new.control_group != old.control_group:
        raise ConfigError("[supervisor] control_group changed: a reload cannot re-own "
                          "the control socket", path=str(new.path),
                          hint="restart the daemon to change who may use it")
    before = {c.name: c for c in old.components}
    after = {c.name: c for c in new.components}
    changed = tuple(c.name for c in new.components if c.name in before
                    and _differs(before[c.name], c, old, new))
    return ReloadPlan(
        added=tuple(n for n in after if n not in before),
        removed=tuple(n for n in before if n not in after),
        changed=changed,
        unchanged=tuple(n for n in after if n in before and n not in changed))


def _differs(was: ComponentConfig, now: ComponentConfig, old: Config, new: Config) -> bool:
    if was != now or old.debug != new.debug:
        return True
    old_dirs = {c.name: c.datadir for c in old.components}
    new_dirs = {c.name: c.datadir for c in new.components}
    return any(old_dirs.get(d) != new_dirs.get(d) for d in now.depends_on)
