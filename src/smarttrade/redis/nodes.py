"""What a topology tells about its servers, for `smarttrade status` and the health checks.

Each topology fills these from the servers themselves (CLUSTER SHARDS/NODES, SENTINEL masters,
INFO replication), never from settings alone: status must show what is, not what was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class NodeView:
    addr: str  # host:port
    role: str  # primary | replica | sentinel
    slots: str = ""  # cluster primaries: "0-5460"
    of: str = ""  # replicas: their primary's addr
    link: str = ""  # replicas: master_link_status; sentinels: the master they see
    healthy: bool = True


@dataclass(frozen=True, slots=True)
class TopologyView:
    mode: str  # standalone | sentinel | cluster
    tls: bool
    nodes: list[NodeView] = field(default_factory=list)
    master_name: str = ""  # sentinel
    master: str = ""  # sentinel: the current master per the sentinels


def replication_views(addr: str, info: dict[str, object]) -> list[NodeView]:
    """A server and the replicas it reports, from its INFO replication (``slaveN:ip=..,port=..``)."""
    role = "primary" if info.get("role") == "master" else "replica"
    if role == "replica":
        of = f"{info.get('master_host')}:{info.get('master_port')}"
        link = str(info.get("master_link_status", ""))
        return [NodeView(addr, role, of=of, link=link, healthy=link == "up")]
    views = [NodeView(addr, role)]
    for name, value in sorted(info.items()):
        if not (name.startswith("slave") and name[5:].isdigit() and isinstance(value, dict)):
            continue
        state = str(value.get("state", ""))
        views.append(
            NodeView(
                f"{value.get('ip')}:{value.get('port')}",
                "replica",
                of=addr,
                link=state,
                healthy=state == "online",
            )
        )
    return views
