"""The workflow room: the instructor's cycle around the judge and the sandbox.

- ``course`` and ``cli``: release, collect, autograde, feedback, export, status, isolation, doctor;
- ``distribute``: a class graded on Dask, one task per learner (a local cluster or ``--cluster``);
- ``nbgrader_plugins``: judging one notebook in the sandbox, and recording a judgement in nbgrader;
- ``preflight``: proving that grading works here before anyone is graded;
- ``earlier_chapters``: the given code a chapter imports from earlier chapters' worked solutions.

Arrows go one way: workflow -> isolation -> judge (isolation needs nothing of the judge).
"""
