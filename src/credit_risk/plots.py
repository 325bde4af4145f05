"""Evaluation plots: DVC plot data (CSV) and the same curves as PNG images."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on CI machines

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

from credit_risk.files import write_with
from credit_risk.schema import POSITIVE_CLASS, outcome_names

MAX_CURVE_POINTS = 1000
CALIBRATION_BINS = 10
# Plot data is written at this many decimals: finer than any plot shows, and coarse enough that
# the last bits of floating point arithmetic, which differ between CPUs and BLAS kernels (about
# 1e-15), never change a written value (`dvc plots diff` then shows real changes only).
PLOT_DECIMALS = 6


def _thin(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep at most MAX_CURVE_POINTS evenly spaced points (first and last included)."""
    if len(frame) <= MAX_CURVE_POINTS:
        return frame
    keep = np.unique(np.linspace(0, len(frame) - 1, MAX_CURVE_POINTS).round().astype(int))
    return frame.iloc[keep]


def curves(labels: pd.Series, scores: pd.Series, decisions: pd.Series) -> dict[str, pd.DataFrame]:
    """The data behind every plot, one table per plot."""
    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    observed, predicted = calibration_curve(labels, scores, n_bins=CALIBRATION_BINS)
    names = outcome_names()
    return {
        "roc": _thin(pd.DataFrame({"fpr": fpr, "tpr": tpr})).round(PLOT_DECIMALS),
        "precision_recall": _thin(pd.DataFrame({"recall": recall, "precision": precision})).round(
            PLOT_DECIMALS
        ),
        "calibration": pd.DataFrame(
            {"mean_predicted": predicted, "observed_share": observed}
        ).round(PLOT_DECIMALS),
        "confusion": pd.DataFrame(
            {
                "actual": labels.map(names).to_numpy(),
                "predicted": decisions.map(names).to_numpy(),
            }
        ),
    }


def _to_csv(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, index=False)


def write_plot_data(tables: dict[str, pd.DataFrame], folder: Path) -> None:
    for name, table in tables.items():
        write_with(folder / f"{name}.csv", partial(_to_csv, table))


def _save(figure: plt.Figure, target: Path) -> None:
    write_with(
        target, lambda tmp: figure.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    )
    plt.close(figure)


def write_figures(
    tables: dict[str, pd.DataFrame], importance: pd.DataFrame, roc_auc: float, folder: Path
) -> None:
    """Draw the evaluation plots as PNG files in ``folder``."""
    roc = tables["roc"]
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot(roc["fpr"], roc["tpr"], label=f"model (AUC {roc_auc:.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC curve")
    axes.legend(loc="lower right")
    _save(figure, folder / "roc.png")

    pr = tables["precision_recall"]
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot(pr["recall"], pr["precision"])
    found = f"Recall ({outcome_names()[POSITIVE_CLASS]} outcomes found)"
    axes.set(xlabel=found, ylabel="Precision", title="Precision-recall")
    axes.set_ylim(0, 1.02)
    _save(figure, folder / "precision_recall.png")

    confusion = tables["confusion"]
    order = [outcome_names()[1 - POSITIVE_CLASS], outcome_names()[POSITIVE_CLASS]]
    matrix = confusion_matrix(confusion["actual"], confusion["predicted"], labels=order)
    figure, axes = plt.subplots(figsize=(4.5, 4))
    image = axes.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour)
    axes.set_xticks(range(2), order)
    axes.set_yticks(range(2), order)
    axes.set(xlabel="Predicted", ylabel="Actual", title="Confusion matrix")
    figure.colorbar(image, ax=axes)
    _save(figure, folder / "confusion_matrix.png")

    calibration = tables["calibration"]
    figure, axes = plt.subplots(figsize=(5, 5))
    positive = outcome_names()[POSITIVE_CLASS]
    axes.plot(
        calibration["mean_predicted"], calibration["observed_share"], marker="o", label="model"
    )
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    axes.set(
        xlabel=f"Mean predicted probability of {positive}", ylabel=f"Observed share of {positive}"
    )
    axes.set_title("Calibration")
    axes.legend(loc="upper left")
    _save(figure, folder / "calibration.png")

    ordered = importance.sort_values("importance_mean")
    figure, axes = plt.subplots(figsize=(6, 0.4 * len(ordered) + 1.2))
    axes.barh(ordered["feature"], ordered["importance_mean"], xerr=ordered["importance_std"])
    axes.set(xlabel="Drop in ROC AUC when shuffled", title="Permutation feature importance")
    figure.tight_layout()
    _save(figure, folder / "feature_importance.png")
