"""The judge room: from recorded numbers and submitted source to verdicts. Pure: no I/O beyond what it is handed.

- ``items/`` (one module per chapter): how to draw an item's random cases and how to judge what came back;
- ``references/``: the trusted reference implementations, in float64;
- ``numerics``, ``checks``, ``cases``: centered differences, learner-facing checks, random inputs;
- ``protocol``: the call programs the kernel runs and the bounded reading of what it recorded;
- ``review``: the submitted source, read for delegation and tampering;
- ``notebooks``: which cells of a chapter notebook answer and which grade.

Nothing here imports nbgrader, the sandbox or the workflow.
"""
