"""Internal: a workflow's graph, laid out in layers and drawn as an SVG on the server.

A step's layer is the longest path to it from a step that waits for nothing; in a layer the
steps are ordered by where their parents are (the mean of their places, then flow order), so
edges cross less. Each step is a box coloured by its status (a CSS class the page's script
changes as statuses change), with its label, job id and ``Name.method``, a link to its job.
An edge is a curve from parent to child, dashed when the child runs once its parents *ended*
(succeeded or not). Children waiting for the same three or more parents share one bus line, so
two layers of 20 that all wait for each other draw 41 lines, not 400. A layer draws at most
:data:`MAX_ROW` steps (a group of 10,000 members is 40 boxes and one counting the rest), and
the graph at most :data:`MAX_DRAWN`, whole layers from the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from urllib.parse import quote

import attrs

from jobkit.records import NEEDS_ENDED, WorkflowStep

#: The most steps drawn: whole layers from the first, until this many; the page says so.
MAX_DRAWN = 2_000
#: The most steps of one layer drawn; a box at the row's end counts the others.
MAX_ROW = 40
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


@attrs.frozen
class Fold:
    """The steps of a layer past :data:`MAX_ROW`, counted in a box at the row's end."""

    hidden: int
    x: float
    y: float


@attrs.frozen
class Layout:
    """Where each drawn step's box is, and the folds of rows too long to draw."""

    boxes: dict[str, Placed]
    folds: list[Fold]
    #: The layers drawn, and the layers of the workflow.
    layers: int
    all_layers: int


def layout(steps: Sequence[WorkflowStep]) -> Layout:
    """Each step's box: layers by longest path, each layer centred, the long ones folded.

    A layer draws its first :data:`MAX_ROW` steps (in its order) and a box counting the
    others; layers are drawn from the first until :data:`MAX_DRAWN` steps are.
    """
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
    rows: list[tuple[list[WorkflowStep], int]] = []
    drawn = 0
    for row in layers:
        if drawn >= MAX_DRAWN:
            break
        row.sort(key=lambda step: (_mean([place[p] for p in step.parents if p in place]),
                                   index[step.job_id]))
        shown = row[:min(MAX_ROW, MAX_DRAWN - drawn)]
        drawn += len(shown)
        rows.append((shown, len(row) - len(shown)))
        slots = len(shown) + (1 if len(row) > len(shown) else 0)
        for position, step in enumerate(shown):
            place[step.job_id] = position - (slots - 1) / 2  # centred on 0
    widest = max((len(shown) + (1 if hidden else 0) for shown, hidden in rows), default=0)
    middle = MARGIN + (widest * (BOX_W + GAP_X) - GAP_X) / 2

    def left(slot: float) -> float:
        return middle + slot * (BOX_W + GAP_X) - BOX_W / 2

    boxes = {step.job_id: Placed(step, depth, left(place[step.job_id]), _top(depth))
             for depth, (shown, _) in enumerate(rows) for step in shown}
    folds = [Fold(hidden, left(len(shown) / 2), _top(depth))
             for depth, (shown, hidden) in enumerate(rows) if hidden]
    return Layout(boxes, folds, len(rows), len(layers))


def _top(layer: int) -> float:
    return MARGIN + layer * (BOX_H + GAP_Y)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def size(found: Layout) -> tuple[int, int]:
    """The drawing's width and height in pixels (the margins alone when nothing is drawn)."""
    lefts = [box.x for box in found.boxes.values()] + [fold.x for fold in found.folds]
    right = max(lefts, default=0.0) + BOX_W + MARGIN
    return int(right), int(_top(found.layers) - GAP_Y + MARGIN) if found.layers else 2 * MARGIN


@attrs.frozen
class Drawing:
    """The graph as SVG, and how many of the workflow's steps and layers it draws."""

    svg: str
    drawn: int
    layers: int
    all_layers: int


def draw(steps: Sequence[WorkflowStep], title: str) -> Drawing:
    """The workflow's graph as an inline SVG element (folded as :func:`layout` says)."""
    found = layout(steps)
    width, height = size(found)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="workflow-graph" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}">']
    parts.extend(_edges(found.boxes))
    parts.extend(_box(box) for box in found.boxes.values())
    parts.extend(f'<g class="wf-fold"><rect x="{fold.x:.0f}" y="{fold.y:.0f}" '
                 f'width="{BOX_W}" height="{BOX_H}" rx="6"/><text x="{fold.x + 8:.0f}" '
                 f'y="{fold.y + 31:.0f}">+ {fold.hidden:,} more in this layer</text></g>'
                 for fold in found.folds)
    parts.append("</svg>")
    return Drawing("".join(parts), len(found.boxes), found.layers, found.all_layers)


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
