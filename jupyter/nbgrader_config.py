# The learners' nbgrader settings. `make lab` (and `make test`) copy this file into the virtual
# environment's Jupyter configuration folder (.venv/etc/jupyter/), where both the Validate button
# and `nbgrader validate` read it; with conda: cp jupyter/nbgrader_config.py "$CONDA_PREFIX/etc/jupyter/".
#
# Validate counts only graded cells. The released notebook's hidden-test cells therefore end with
# dlcourse.validation.report("<function>") (the release step adds it; grading puts the hidden tests
# back in its place), which under Validate names each function that is unwritten or fails its
# visible check. "Success" means every visible check passes; hidden tests run at grading time.
c = get_config()  # noqa: F821

c.Validator.width = 100
c.Validator.failed_warning = (
    "VALIDATION FAILED ON {num_failed} CELL(S)! Each one below names a function that is not written "
    "yet or fails its visible check, and says why. Validate says Success once every visible check "
    "passes; the hidden tests, on fresh random inputs, run when your notebook is graded.\n"
)
# A slow laptop: Validate runs the notebook's demonstrations with the grader's small budgets,
# but give each cell more than nbgrader's default 30 s before calling it stuck.
c.Execute.timeout = 120
