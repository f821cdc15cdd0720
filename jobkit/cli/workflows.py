"""Internal: ``jobkit workflow ID`` (a workflow as a tree) and ``jobkit workflow cancel ID``."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from jobkit.cli.group import State, app_command, json_option, main
from jobkit.cli.output import echo, fail

#: The levels of a tree printed before what is deeper continues in a tree of its own.
MAX_DEPTH = 8
#: The width of the tree when printed to a file or pipe: no line is wrapped.
UNWRAPPED = 100_000
#: The other steps a fan-in step names; it counts the rest.
NAMED = 3


class WorkflowGroup(click.Group):
    """``jobkit workflow ID`` shows the workflow: a first word that names no subcommand is an id.

    ``jobkit workflow show ID`` is the same; ``show`` is listed with the other subcommands.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Read ``workflow ID [--json]`` as ``workflow show ID [--json]``."""
        first = next((arg for arg in args if not arg.startswith("-")), None)
        if (first is not None and first not in self.commands) or not args:
            args = ["show", *args]  # none: show says which argument is missing
        return super().parse_args(ctx, args)


@main.group(cls=WorkflowGroup)
def workflow() -> None:
    """Show a workflow as a tree (`jobkit workflow ID`), or cancel it.

    `jobkit workflow ID` prints each step under the step it waits for: where it sits in the
    flow (`1.then`: the callback of the group at place 1), its job, job id and status. A step
    that waits for several (a group's callback) is shown once, under the last of them, and
    names the others. Workflows need a store with the `workflows` capability."""


@workflow.command()
@click.argument("workflow_id")
@json_option("Print the workflow and every step (job id, label, status, parents) as JSON.")
@app_command
def show(state: State, workflow_id: str, as_json: bool) -> None:
    """Show workflow WORKFLOW_ID as a tree (the same as `jobkit workflow WORKFLOW_ID`)."""
    from jobkit.workflow_report import workflow_json

    record = state.app().get_workflow(workflow_id)
    if as_json:
        click.echo(json.dumps(workflow_json(record), indent=2))
        return
    print_tree(record)


def print_tree(record: Any) -> None:
    """The workflow as a rich tree, stored text never read as markup."""
    from rich.console import Console
    from rich.text import Text
    from rich.tree import Tree

    from jobkit.demo import COLOURS
    from jobkit.workflow_report import TreeNode, labels_of, status_counts, tree

    counts = ", ".join(f"{status} {n}" for status, n in status_counts(record).items())
    labels = labels_of(record)
    # on a terminal lines wrap under their guides; piped, a step is one line whatever its length
    console = Console(highlight=False, width=None if sys.stdout.isatty() else UNWRAPPED)

    def line(node: TreeNode) -> Text:
        step = node.step
        text = Text()
        text.append(_escaped(step.label), style="bold")
        text.append(f"  {_escaped(f'{step.name}.{step.method}')}  #{_escaped(step.job_id)}  ")
        text.append(step.status.value, style=COLOURS[step.status])
        if node.also_waits_for:
            others = ", ".join(_escaped(f"{labels[p]} #{p}")
                               for p in node.also_waits_for[:NAMED])
            more = len(node.also_waits_for) - NAMED
            text.append(f"  (also waits for {others}{f' and {more} more' if more > 0 else ''})",
                        style="dim")
        return text

    # each part is a tree of at most MAX_DEPTH levels; what is deeper continues in a part below
    parts: list[tuple[str, Sequence[TreeNode]]] = [
        (f"workflow {record.id}: {len(record.steps)} step(s); {counts}", tree(record))]
    while parts:
        title, nodes = parts.pop(0)
        root = Tree(Text(title, style="bold"), guide_style="dim")
        stack: list[tuple[Tree, Sequence[TreeNode], int]] = [(root, nodes, 1)]
        while stack:  # no recursion: a long chain is a deep tree
            branch, level, depth = stack.pop()
            for node in level:
                added = branch.add(line(node))
                if node.children and depth == MAX_DEPTH:
                    added.add(Text(f"... {len(node.children)} more below", style="dim"))
                    parts.append((f"after {_escaped(node.step.label)} "
                                  f"#{_escaped(node.step.job_id)}:", node.children))
                else:
                    stack.append((added, node.children, depth + 1))
        console.print(root)


def _escaped(text: str) -> str:
    from jobkit.logs import escape

    return escape(text)


@workflow.command()
@click.argument("workflow_id")
@json_option("Print {workflow_id, cancelled} as JSON.")
@app_command
def cancel(state: State, workflow_id: str, as_json: bool) -> None:
    """Cancel every step of workflow WORKFLOW_ID that has not ended (running ones too).

    Exits 1 when every step had ended already."""
    cancelled = state.app().cancel_workflow(workflow_id)
    if as_json:
        click.echo(json.dumps({"workflow_id": workflow_id, "cancelled": cancelled}))
    elif cancelled:
        echo(f"cancelled {cancelled} step(s) of workflow {workflow_id}")
    if not cancelled:
        fail(f"workflow {workflow_id} has no unfinished step")
