# The instructor's nbgrader on the course hub: the learners' settings plus the course folder, so the
# formgrader (for reviewing held items by hand) and `nbgrader` commands find the gradebook.
import os

load_subconfig(os.path.join(os.path.dirname(__file__), "..", "jupyter-learner", "nbgrader_config.py"))  # noqa: F821
c = get_config()  # noqa: F821
c.CourseDirectory.root = os.environ.get("COURSE_DIR", "/srv/dl-course/course")
