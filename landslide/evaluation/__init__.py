"""Evaluation: metrics with bootstrap intervals, threshold choice, plots and reports."""
