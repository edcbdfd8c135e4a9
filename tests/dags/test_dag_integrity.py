"""Every wave DAG parses, is the one we expect, and is built to production rules."""

from __future__ import annotations

import socket

import pytest

from include.dijlepost.waves import WAVES

EXPECTED_DAG_IDS = {"letters_finance", "letters_gas", "letters_economy_housing", "letters_ebox_followup"}
PRINT_HOUSE_DAG_IDS = {"print_house_acknowledgements", "print_house_reconciliation"}
EXPECTED_DAG_IDS |= PRINT_HOUSE_DAG_IDS
EXPECTED_DAG_IDS |= {"letters_evaluation"}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("af")))
    mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

    # No database or network at parse time: any attempt fails the import and shows up below.
    def refuse(*args, **kwargs):
        raise AssertionError("network or database access while parsing DAG files")

    mp.setattr(socket.socket, "connect", refuse)
    mp.setattr("psycopg.connect", refuse)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder="dags")
    mp.undo()
    return bag


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_exactly_the_wave_dags(dagbag):
    assert set(dagbag.dag_ids) == EXPECTED_DAG_IDS
    assert {w.dag_id for w in WAVES.values()} <= EXPECTED_DAG_IDS


def test_ebox_followup_dag_is_built_to_rules(dagbag):
    dag = dagbag.dags["letters_ebox_followup"]
    assert {"dijlepost", "ebox"} <= set(dag.tags)
    assert dag.on_failure_callback is not None and dag.catchup is False and dag.max_active_runs == 1
    assert dag.dagrun_timeout is not None
    for task in dag.tasks:
        assert task.retries >= 1 and task.on_failure_callback, task.task_id
    assert dag.get_task("fetch_ebox_read_status").pool == "ebox_publication"
    # Copies are decided on the read status fetched in the same run.
    assert dag.get_task("create_followup_copies").upstream_task_ids == {"fetch_ebox_read_status"}


@pytest.mark.parametrize("dag_id", sorted(PRINT_HOUSE_DAG_IDS))
def test_print_house_dags_are_built_to_rules(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert {"dijlepost", "print-house"} <= set(dag.tags)
    assert dag.on_failure_callback is not None
    assert dag.catchup is False and dag.max_active_runs == 1 and dag.dagrun_timeout is not None
    for task in dag.tasks:
        assert task.retries >= 1 and task.on_failure_callback, task.task_id
    if dag_id == "print_house_acknowledgements":
        assert dag.get_task("collect_print_house_files").pool == "print_house_sftp"
        # The last task fails the run for refused files and overdue batches alike.
        assert dag.get_task("check_unacknowledged_batches").upstream_task_ids == {"collect_print_house_files"}


@pytest.mark.parametrize("department", sorted(WAVES))
def test_dag_is_built_to_rules(dagbag, department):
    wave = WAVES[department]
    dag = dagbag.dags[wave.dag_id]
    assert {"dijlepost", department, *wave.tags} <= set(dag.tags)
    assert dag.on_failure_callback is not None
    assert dag.catchup is False and dag.max_active_runs == 1
    assert dag.dagrun_timeout is not None
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
        assert task.on_failure_callback, task.task_id
    # Fan-out is by chunk: a task group mapped over the claim's chunks renders, publishes and prints
    # each chunk, never one task per letter.
    per_chunk = {t.task_id for t in dag.tasks if t.get_closest_mapped_task_group() is not None}
    assert per_chunk == {
        "chunk.decide_channels",
        "chunk.render_letters",
        "chunk.choose_channels",
        "chunk.deliver_to_ebox",
        "chunk.hand_over_to_print",
    }
    assert dag.get_task("chunk.render_letters").queue == "render"
    assert dag.get_task("chunk.render_letters").pool == "rendering"
    assert dag.get_task("chunk.deliver_to_ebox").pool == "ebox_publication"
    assert dag.get_task("chunk.hand_over_to_print").pool == "print_house_sftp"
    assert dag.get_task("hand_over_earlier_batches").pool == "print_house_sftp"
    # Within a chunk: decide, render, then a branch into the channels that have letters. Print also
    # follows eBox, so NO_DIGITAL_USER fallbacks are printed in the same run; a chunk's delivery goes
    # before the next chunk's rendering (weight rule "upstream").
    # (claim_letters is upstream of every task of the group: it hands out the chunk numbers; a chunk
    # checks eBox activation and decides its own letters, so the first chunk renders without waiting
    # for the whole claim to be decided)
    assert dag.get_task("check_ebox_message_types").downstream_task_ids == {"claim_letters"}
    assert dag.get_task("chunk.decide_channels").upstream_task_ids == {"claim_letters", "read_rollout_phase"}
    assert dag.get_task("chunk.render_letters").upstream_task_ids == {
        "chunk.decide_channels",
        "claim_letters",
    }
    branch = dag.get_task("chunk.choose_channels")
    assert branch.task_type in ("_BranchPythonDecoratedOperator", "BranchPythonOperator")
    assert branch.upstream_task_ids == {"chunk.render_letters", "claim_letters"}
    assert branch.downstream_task_ids == {"chunk.deliver_to_ebox", "chunk.hand_over_to_print"}
    assert dag.get_task("chunk.deliver_to_ebox").upstream_task_ids == {
        "chunk.choose_channels",
        "claim_letters",
    }
    assert dag.get_task("chunk.hand_over_to_print").upstream_task_ids == {
        "chunk.choose_channels",
        "chunk.deliver_to_ebox",
        "claim_letters",
    }
    assert dag.get_task("chunk.hand_over_to_print").trigger_rule == "none_failed"
    # Every task has a time limit; a per-chunk task's is sized from the wave's largest chunk.
    assert all(t.execution_timeout is not None for t in dag.tasks)
    from include.dijlepost.dag_factory import chunk_timeout

    assert dag.get_task("chunk.render_letters").execution_timeout == chunk_timeout(wave)
    assert {str(t.weight_rule) for t in dag.tasks} == {"upstream"}
    assert dag.get_task("record_outcome").upstream_task_ids == {"hand_over_earlier_batches"}
    assert dag.get_task("read_rollout_phase").task_type in (
        "_ShortCircuitDecoratedOperator",
        "ShortCircuitOperator",
    )


def test_every_dag_file_is_thin():
    """A wave DAG file only hands its wave to the factory; in the other DAG files each task body calls
    the function of include/ that does the work and logs what it did."""
    import ast
    from pathlib import Path

    for path in Path("dags").glob("*.py"):
        text = path.read_text()
        if "build_wave_dag" in text:
            assert len(text.splitlines()) <= 10, f"{path} should only wire a wave to the factory"
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef) and any(
                ast.unparse(d).split("(")[0].split(".")[0] == "task" for d in node.decorator_list
            ):
                assert node.end_lineno - node.lineno <= 25, f"{path}: task {node.name} holds logic"


def test_every_task_of_every_dag_has_a_time_limit_retries_and_the_alert(dagbag):
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.execution_timeout is not None, (dag.dag_id, task.task_id)
            assert task.retries >= 1 and task.on_failure_callback, (dag.dag_id, task.task_id)


def test_evaluation_dag_is_built_to_rules(dagbag):
    dag = dagbag.dags["letters_evaluation"]
    assert {"dijlepost", "evaluation"} <= set(dag.tags)
    assert dag.on_failure_callback is not None and dag.catchup is False and dag.max_active_runs == 1
    assert dag.dagrun_timeout is not None
    for task in dag.tasks:
        assert task.retries >= 1 and task.on_failure_callback, task.task_id
    # The weekly summary runs after the day's figures, and only when the week is complete.
    assert dag.get_task("evaluate_week").upstream_task_ids == {"week_is_complete"}
    assert dag.get_task("week_is_complete").upstream_task_ids == {"evaluate_day"}
