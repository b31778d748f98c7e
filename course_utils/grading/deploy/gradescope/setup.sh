#!/usr/bin/env bash
# Gradescope autograder set-up (runs once, as root, when Gradescope builds the image).
# Zip this folder's two files with the course repository as source/:
#   git archive --prefix=source/ -o autograder.zip HEAD && zip -j autograder.zip \
#       course_utils/grading/deploy/gradescope/setup.sh course_utils/grading/deploy/gradescope/run_autograder
set -euo pipefail
apt-get update && apt-get install -y --no-install-recommends python3-venv bubblewrap
python3 -m venv /opt/course
/opt/course/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1
/opt/course/bin/pip install --no-cache-dir -e /autograder/source
/opt/course/bin/python -m ipykernel install --sys-prefix --name cnn-course --display-name "Python 3 (CNN course)"
