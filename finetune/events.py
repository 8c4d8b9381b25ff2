"""How training events and the data report read as text: one wording for the app's event log, the
command line and the model card."""
from __future__ import annotations


def event_text(event: dict) -> str:
    """One event (see `finetune.train.Progress`) as a line without its time: a loss, a validation, or the
    event's own message."""
    kind = event.get("event", "")
    if kind in ("log", "progress"):
        text = f"step {event.get('step')}/{event.get('total_steps')} epoch {event.get('epoch') or 0:.2f}"
        if "loss" in event:
            text += f"  loss {event['loss']:.4f}"
        if kind == "progress" and event.get("budget_s"):
            text += f", {budget_text(event)}"
        if kind == "progress" and event.get("eta_s") is not None:
            text += f", ETA {duration(event['eta_s'])}"
        return text
    if kind == "eval":
        return (f"validation @ step {event.get('step')}: loss {event.get('eval_loss', float('nan')):.4f}, "
                f"accuracy {event.get('eval_accuracy', 0):.3f}, macro-F1 {event.get('eval_f1_macro', 0):.3f}")
    return event.get("message", "")


def duration(seconds: float) -> str:
    """75 → "1m 15s", 9.6 → "10s"."""
    seconds = int(round(seconds))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def budget_text(event: dict) -> str:
    """A budgeted run's time so far against its budget: "1m 05s of 2m 00s budget"."""
    return f"{duration(event.get('elapsed_s') or 0)} of {duration(event['budget_s'])} budget"


def counts(values: dict | None) -> str:
    """{"train": 900, "test": 100} → "train 900, test 100"; nested counts go in parentheses."""
    return ", ".join(f"{k} ({counts(v)})" if isinstance(v, dict) else f"{k} {v:,}" for k, v in (values or {}).items())


def data_report_text(report: dict | None) -> str:
    """The data report (data_report.json) in one paragraph of plain text."""
    if not report:
        return ""
    return (f"Rows in: {counts(report.get('rows_in'))}. Dropped {report.get('dropped_empty', 0)} empty, "
            f"{report.get('dropped_unknown_label', 0)} with unknown labels, {report.get('duplicates_removed', 0)} "
            f"duplicates after lower-casing and folding whitespace ({report.get('conflicting_labels', 0)} with "
            f"conflicting labels), {report.get('train_test_overlap', 0)} train rows also in test (leakage), "
            f"{report.get('near_test_copies', 0)} nearly copying a test tweet, {report.get('near_duplicates_removed', 0)} "
            f"near-duplicates ({report.get('near_duplicate_conflicts', 0)} groups with conflicting labels), "
            f"{report.get('excluded_by_review', 0)} excluded in the label review; relabelled "
            f"{report.get('relabelled_by_corrections', 0)} and added {report.get('corrections_added', 0)} from "
            f"people's corrections{_corrections(report)}. Used: {counts(report.get('sizes'))}. Label counts: "
            f"{counts(report.get('label_counts'))}. Likely label errors not reviewed yet: "
            f"{report.get('suspected_label_errors', 0)} of the training rows.")


def _corrections(report: dict) -> str:
    """What became of people's corrections, where any are pending, rejected or over the share."""
    parts = [f"{report[key]} {what}" for key, what in (
        ("corrections_accepted", "accepted"), ("corrections_pending", "pending an admin's review"),
        ("corrections_rejected", "rejected"), ("corrections_left_out", "left out over the run's share"))
        if report.get(key)]
    return f" ({', '.join(parts)})" if parts else ""
