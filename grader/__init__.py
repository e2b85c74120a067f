"""The autograder, in three rooms with one-way arrows: ``workflow`` -> ``isolation`` -> ``judge``.

See each room's ``__init__`` for what it holds and README "How grading works" for the picture.
"""
