"""bench/explain.py walks EXPLAIN (FORMAT JSON) plans: `make bench-outbox-plans` fails on
what it finds, so a Seq Scan nested anywhere in the tree must be found."""

from bench.explain import Plan, describe, rows, seq_scanned


def scan(node_type: str, table: str, *, index: str = "", actual_rows: int = 1) -> Plan:
    node: Plan = {
        "Node Type": node_type,
        "Relation Name": table,
        "Actual Rows": actual_rows,
        "Actual Loops": 1,
    }
    if index:
        node["Index Name"] = index
    return node


# The claimed read's shape: deliveries joined to subscriptions and events, sorted.
def claimed_read(delivery_scan: Plan) -> Plan:
    return {
        "Node Type": "Sort",
        "Actual Rows": 50,
        "Actual Loops": 1,
        "Plans": [
            {
                "Node Type": "Nested Loop",
                "Actual Rows": 50,
                "Actual Loops": 1,
                "Plans": [
                    {
                        "Node Type": "Nested Loop",
                        "Actual Rows": 50,
                        "Actual Loops": 1,
                        "Plans": [delivery_scan, scan("Seq Scan", "subscription")],
                    },
                    scan("Index Scan", "event", index="event_pkey"),
                ],
            }
        ],
    }


def test_a_seq_scan_deep_in_the_tree_is_found() -> None:
    plan = claimed_read(scan("Seq Scan", "delivery", actual_rows=50))

    assert seq_scanned(plan) == ["delivery", "subscription"]


def test_index_scans_are_not_seq_scans() -> None:
    plan = claimed_read(scan("Index Scan", "delivery", index="delivery_claim_token_idx"))

    assert seq_scanned(plan) == ["subscription"]
    assert describe(plan) == (
        "Sort: Index Scan using delivery_claim_token_idx on delivery, "
        "Seq Scan on subscription, Index Scan using event_pkey on event"
    )


def test_a_write_counts_the_rows_it_found_to_change() -> None:
    update: Plan = {
        "Node Type": "ModifyTable",
        "Operation": "Update",
        "Relation Name": "event",
        "Actual Rows": 0,
        "Actual Loops": 1,
        "Plans": [scan("Index Scan", "event", index="event_pkey", actual_rows=1)],
    }

    assert rows(update) == 1
    assert describe(update) == "Update on event: Index Scan using event_pkey on event"


def test_an_insert_names_its_conflict_index() -> None:
    insert: Plan = {
        "Node Type": "ModifyTable",
        "Operation": "Insert",
        "Relation Name": "handled",
        "Conflict Arbiter Indexes": ["handled_event_once"],
        "Actual Rows": 50,
        "Actual Loops": 1,
        "Plans": [{"Node Type": "Values Scan", "Actual Rows": 50, "Actual Loops": 1}],
    }

    assert rows(insert) == 50
    assert describe(insert) == "Insert on handled: on conflict handled_event_once"
