"""The isolation room: running untrusted learner code.

- ``sandbox``: the allow-list root, user and network namespaces, limits (``course isolation`` says what holds);
- ``launcher``: the small program the sandbox starts in stages (its own file, run with ``python -I -S -c``);
- ``notebook_runner``: executes a notebook inside the sandbox and keeps the grading files as recorded.

It imports nothing of the judge or the workflow.
"""
