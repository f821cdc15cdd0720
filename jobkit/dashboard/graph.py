"""Internal: a workflow's graph, laid out in layers and drawn as an SVG on the server.

A step's layer is the longest path to it from a step that waits for nothing; in a layer the
steps are ordered by where their parents are (the mean of their places, then flow order), so
edges cross less. Each step is a box coloured by its status (a CSS class the page's script
changes as statuses change), with its label, job id and ``Name.method``, a link to its job.
An edge is a curve from parent to child, dashed when the child runs once its parents *ended*
(succeeded or not). Children waiting for the same three or more parents share one bus line, so
two layers of 20 that all wait for each other draw 41 lines, not 400. Past :data:`MAX_DRAWN`
steps only the first ones (in flow order, so each with its parents) are drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from urllib.parse import quote

import attrs

from jobkit.records import NEEDS_ENDED, WorkflowStep

#: The most steps drawn; the page says how many more there are.
MAX_DRAWN = 2_000
#: A box's size, the gaps between boxes and between layers, the margin around, in pixels.
BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 180, 52, 16, 56, 12
#: The characters of text a box has room for on one line.
FITS = 26
#: Children waiting for at least this many parents share a bus line.
BUS_MIN = 3


@attrs.frozen
class Placed:
    """A step's box: its layer and its place in the layer, its top-left corner."""

    step: WorkflowStep
    layer: int
    x: float
    y: float


def layout(steps: Sequence[WorkflowStep]) -> dict[str, Placed]:
    """Each step's box, by job id: layers by longest path, each layer centred."""
    index = {step.job_id: position for position, step in enumerate(steps)}
    layer_of: dict[str, int] = {}
    for step in steps:  # parents come first: one pass finds every longest path
        layer_of[step.job_id] = 1 + max((layer_of[p] for p in step.parents if p in layer_of),
                                        default=-1)
    layers: list[list[WorkflowStep]] = [[] for _ in range(1 + max(layer_of.values(),
                                                                   default=-1))]
    for step in steps:
        layers[layer_of[step.job_id]].append(step)
    place: dict[str, float] = {}
    for row in layers:
        row.sort(key=lambda step: (_mean([place[p] for p in step.parents if p in place]),
                                   index[step.job_id]))
        for position, step in enumerate(row):
            place[step.job_id] = position - (len(row) - 1) / 2  # centred on 0
    widest = max((len(row) for row in layers), default=0)
    middle = MARGIN + (widest * (BOX_W + GAP_X) - GAP_X) / 2
    return {
        step.job_id: Placed(step, depth, middle + place[step.job_id] * (BOX_W + GAP_X) - BOX_W / 2,
                            MARGIN + depth * (BOX_H + GAP_Y))
        for depth, row in enumerate(layers) for step in row
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def size(boxes: dict[str, Placed]) -> tuple[int, int]:
    """The drawing's width and height in pixels."""
    right = max((box.x for box in boxes.values()), default=0.0) + BOX_W + MARGIN
    bottom = max((box.y for box in boxes.values()), default=0.0) + BOX_H + MARGIN
    return int(right), int(bottom)


def svg(steps: Sequence[WorkflowStep], title: str) -> str:
    """The workflow's graph as an inline SVG element (the first :data:`MAX_DRAWN` steps)."""
    boxes = layout(steps[:MAX_DRAWN])
    width, height = size(boxes)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="workflow-graph" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}">']
    parts.extend(_edges(boxes))
    parts.extend(_box(box) for box in boxes.values())
    parts.append("</svg>")
    return "".join(parts)


def _box(box: Placed) -> str:
    step = box.step
    status = step.status.value
    heading = _fit(f"{step.label} · #{step.job_id}")
    job = f"{step.name}.{step.method}"
    return (f'<a href="/jobs/{quote(step.job_id, safe="")}">'
            f'<g class="wf-step status-{status}" data-step="{escape(step.job_id)}">'
            f"<title>{escape(f'{step.label}: {job} (job #{step.job_id})')}</title>"
            f'<rect x="{box.x:.0f}" y="{box.y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text x="{box.x + 8:.0f}" y="{box.y + 15:.0f}" class="wf-label">'
            f"{escape(heading)}</text>"
            f'<text x="{box.x + 8:.0f}" y="{box.y + 31:.0f}" class="wf-job">'
            f"{escape(_fit(job))}</text>"
            f'<text x="{box.x + 8:.0f}" y="{box.y + 46:.0f}" class="wf-status">'
            f"{status}</text></g></a>")


def _fit(text: str) -> str:
    return text if len(text) <= FITS else text[:FITS - 1] + "…"


def _edges(boxes: dict[str, Placed]) -> list[str]:
    """The edges: a curve per parent and child, a bus per set of children of many parents."""
    shared: dict[tuple[tuple[str, ...], str], list[Placed]] = {}
    parts = []
    for box in boxes.values():
        parents = tuple(p for p in box.step.parents if p in boxes)
        if len(parents) >= BUS_MIN:
            shared.setdefault((parents, box.step.needs), []).append(box)
            continue
        for parent in parents:
            top = boxes[parent]
            x1, y1 = top.x + BOX_W / 2, top.y + BOX_H
            x2, y2 = box.x + BOX_W / 2, box.y
            bend = y2 - GAP_Y / 2
            parts.append(f'<path class="{_edge_class(box.step)}" d="M{x1:.0f},{y1:.0f} '
                         f'C{x1:.0f},{bend:.0f} {x2:.0f},{bend:.0f} {x2:.0f},{y2:.0f}"/>')
    for position, ((parents, _), children) in enumerate(shared.items()):
        tops = [boxes[parent] for parent in parents]
        bus = min(child.y for child in children) - GAP_Y / 2 + (position % 5 - 2) * 3
        xs = [box.x + BOX_W / 2 for box in (*tops, *children)]
        path = [f"M{min(xs):.0f},{bus:.0f}H{max(xs):.0f}"]
        path.extend(f"M{top.x + BOX_W / 2:.0f},{top.y + BOX_H:.0f}V{bus:.0f}" for top in tops)
        path.extend(f"M{child.x + BOX_W / 2:.0f},{bus:.0f}V{child.y:.0f}" for child in children)
        parts.append(f'<path class="{_edge_class(children[0].step)} wf-bus" '
                     f'd="{"".join(path)}"/>')
    return parts


def _edge_class(child: WorkflowStep) -> str:
    return "wf-edge wf-ended" if child.needs == NEEDS_ENDED else "wf-edge"
