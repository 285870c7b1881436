"""Reading PostgreSQL's `EXPLAIN (ANALYZE, FORMAT JSON)` output: what each plan scans.

No library reads these plans for us (the plan visualisers are web tools); the JSON is a
tree of nodes, each with a "Plans" list of its children, so a walk is a few lines.
"""

from collections.abc import Iterator
from typing import Any

Plan = dict[str, Any]


def nodes(plan: Plan) -> Iterator[Plan]:
    """Every node of a plan tree, parents before their children."""
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def seq_scanned(plan: Plan) -> list[str]:
    """The tables the plan reads with a Seq Scan, in plan order."""
    return [node["Relation Name"] for node in nodes(plan) if node["Node Type"] == "Seq Scan"]


def describe(plan: Plan) -> str:
    """The top node, then how each table is read: "Limit: Index Scan using x on t, ..."."""
    reads = [_read(node) for node in list(nodes(plan))[1:] if _reads_a_table(node)]
    if "Conflict Arbiter Indexes" in plan:
        reads.append(f"on conflict {', '.join(plan['Conflict Arbiter Indexes'])}")
    if plan["Node Type"] == "ModifyTable":
        top = f"{plan['Operation']} on {plan['Relation Name']}"
    else:
        top = _read(plan)
    return f"{top}: {', '.join(reads)}" if reads else top


def _reads_a_table(node: Plan) -> bool:
    return "Relation Name" in node or "Index Name" in node


def _read(node: Plan) -> str:
    read: str = node["Node Type"]
    if "Index Name" in node:
        read += f" using {node['Index Name']}"
    if "Relation Name" in node:
        read += f" on {node['Relation Name']}"
    return read


def rows(plan: Plan) -> int:
    """The rows the statement returned, or for a write without RETURNING, the rows it
    found to change (its ModifyTable node itself reports none)."""
    if plan["Node Type"] == "ModifyTable" and plan["Actual Rows"] == 0 and plan.get("Plans"):
        plan = plan["Plans"][0]
    return int(plan["Actual Rows"] * plan["Actual Loops"])
