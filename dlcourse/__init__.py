"""Learner-side support for the course notebooks: data, plots, training loops, visible checks.

Nothing here solves a graded function, and nothing here imports the grader.
"""
