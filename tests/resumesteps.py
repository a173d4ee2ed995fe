"""Steps for ``test_resume_inputs.py`` (module-level, so that their code can be
edited between a run and its resume by making a second module object)."""

import os


def build(marks, version="1.0"):
    _mark(marks, "build")
    return f"artifact-{version}.tar.gz"


def publish(build, marks, version="1.0"):
    _mark(marks, "publish")
    if not os.path.exists(os.path.join(marks, "fixed")):
        raise RuntimeError("the upload failed")
    return f"uploading {build} as release {version}"


def build_v2(marks, version="2.0"):  # the same step with another default
    _mark(marks, "build")
    return f"artifact-{version}.tar.gz"


def publish_v2(build, marks, version="2.0"):
    _mark(marks, "publish")
    return f"uploading {build} as release {version}"


def build_new_code(marks, version="1.0"):  # the same step doing something else
    _mark(marks, "build")
    return f"artifact-{version}.zip"


def _mark(marks, name):
    with open(os.path.join(marks, name), "a") as f:
        f.write("x")
