"""pytest set-up shared by every test file."""
import os

from hypothesis import settings

# On CI the property tests draw the same examples every run (derandomize), so a landing is
# judged on the code, not on which examples one run happened to draw; a developer's run
# (`make test` without CI set) keeps drawing fresh ones and finds new cases.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
