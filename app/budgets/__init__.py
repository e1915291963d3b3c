"""Budgets: one file for lab and field promises, LHCI-compatible assertions, a pure evaluator.

:mod:`app.budgets.verdict` is the contract between the evaluator, the alert state machine, the
gate's reports and the UI: everything downstream consumes :class:`~app.budgets.verdict.Verdict`.
"""
