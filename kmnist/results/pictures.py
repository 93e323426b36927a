"""Pictures of the best trial for the report: a confusion matrix and misclassified test images.

Both come from the stored test probabilities (`kmnist.trainer.artifacts`) and the test images;
images are inlined as tiny grey PNGs, so the page still opens offline.
"""

from __future__ import annotations

import base64
import html
import struct
import zlib

import numpy as np
import plotly.graph_objects as go

from kmnist.backends import Plot
from kmnist.trainer.artifacts import Artifact
from kmnist.trainer.data import CLASSES

# The class characters, in label order, beside their romanised names.
CHARACTERS = ("お", "き", "す", "つ", "な", "は", "ま", "や", "れ", "を")
LABELS = [f"{c} {name}" for c, name in zip(CHARACTERS, CLASSES, strict=True)]


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int = len(CLASSES)) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, title: str) -> go.Figure:
    counts = confusion(y_true, y_pred)
    off = counts.astype(float)
    np.fill_diagonal(off, np.nan)  # the errors carry the colour; the diagonal would drown them
    figure = go.Figure(
        go.Heatmap(
            z=off,
            x=LABELS,
            y=LABELS,
            text=counts,
            texttemplate="%{text}",
            colorscale="Reds",
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text} images<extra></extra>",
            colorbar={"title": "errors"},
        )
    )
    figure.update_layout(
        title=title,
        xaxis={"title": "predicted", "side": "top"},
        yaxis={"title": "true", "autorange": "reversed"},
        width=640,
        height=600,
    )
    return figure


def misclassified_grid(
    images: np.ndarray, y_true: np.ndarray, probs: np.ndarray, limit: int = 48
) -> str:
    """HTML: the most confidently wrong test images, each with its true and predicted class."""
    y_pred = probs.argmax(1)
    wrong = np.flatnonzero(y_pred != y_true)
    wrong = wrong[np.argsort(-probs[wrong, y_pred[wrong]], kind="stable")][:limit]
    cells = []
    for i in wrong:
        t, p = int(y_true[i]), int(y_pred[i])
        caption = f"true {LABELS[t]}<br>pred {LABELS[p]} ({probs[i, p]:.0%})"
        cells.append(
            f'<figure><img alt="test image {i}" src="data:image/png;base64,'
            f'{base64.b64encode(png(images[i])).decode()}"><figcaption>#{i}<br>'
            f"{caption}</figcaption></figure>"
        )
    if not cells:
        return "<p>No misclassified test image.</p>"
    return f'<div class="grid">{"".join(cells)}</div>'


def png(image: np.ndarray, scale: int = 3) -> bytes:
    """A uint8 grey image as PNG bytes, each pixel drawn as scale × scale."""
    big = np.kron(np.asarray(image, np.uint8), np.ones((scale, scale), np.uint8))
    height, width = big.shape
    raw = b"".join(b"\x00" + big[row].tobytes() for row in range(height))  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def caption(text: str) -> str:
    return f"<p class=note>{html.escape(text)}</p>"


def best_trial_sections(
    kept: list[Artifact], goal: str, test_images: np.ndarray | None
) -> list[Plot | str]:
    """The best stored trial's confusion matrix and misclassified test images, and what an
    ensemble of the stored trials adds: figures and HTML for the report."""
    from kmnist.results.ensemble import ensembles

    if not kept:
        return [caption("No stored trial artifacts: pictures of the best trial need them.")]
    best = kept[0]
    arrays = best.arrays()
    y, probs = arrays["test_labels"], arrays["test_probs"]
    title = f"Best trial {best.number}: test confusion matrix (off-diagonal errors)"
    out: list[Plot | str] = [Plot(title, confusion_figure(y, probs.argmax(1), title=""))]
    out.append(f"<h2>Best trial {best.number}: misclassified test images</h2>")
    if test_images is None:
        out.append(caption("The KMNIST test images are not on this machine."))
    else:
        out.append(misclassified_grid(test_images, y, probs))
    out.append("<h2>Ensembles of the stored trials (chosen on validation)</h2>")
    out.append(_ensemble_table(ensembles(kept, goal)))
    return out


def _ensemble_table(scored: list) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(s.name)}</td><td>{len(s.members)}</td>"
        f"<td>{s.val_accuracy:.4f}</td><td>{s.test_accuracy:.4f}</td>"
        f"<td>{s.test_accuracy - scored[0].test_accuracy:+.4f}</td></tr>"
        for s in scored
    )
    head = "<th>ensemble</th><th>trials</th><th>val/accuracy</th><th>test/accuracy</th>"
    return (
        f"<table><thead><tr>{head}<th>gain on test</th></tr></thead><tbody>{rows}</tbody></table>"
    )
